"""Prints what the node-mode manifests promise each other, as JSON: the DaemonSet's
config.yaml (from its ConfigMap), the workload's relay sidecar (arguments, startup probe,
environment names, mounts) and its app container's environment (literal values only).

usage: node_manifest_facts.py BROKER.yaml WORKLOAD.yaml
"""
import json
import sys

import yaml

broker = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
workload = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
daemonset = next(d for d in broker if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
pod = next(d for d in workload if d["kind"] == "Deployment")["spec"]["template"]["spec"]
relay = next(c for c in pod["initContainers"] if c.get("restartPolicy") == "Always")
app = pod["containers"][0]
print(json.dumps({
    "config": next(d for d in broker if d["kind"] == "ConfigMap")["data"]["config.yaml"],
    "brokerSocketMount": next(m["mountPath"] for m in daemonset["containers"][0]["volumeMounts"] if m["name"] == "socket-directory"),
    "relayCommand": relay.get("command", []) + relay.get("args", []),
    "relayStartupProbe": relay["startupProbe"]["exec"]["command"],
    "relayEnvironment": sorted(e["name"] for e in relay.get("env", [])),
    "relaySocketMount": next(m for m in relay["volumeMounts"] if m["name"] == "tokenbroker-socket"),
    "appEnvironment": {e["name"]: e["value"] for e in app.get("env", []) if "value" in e},
    "appSecretEnvironment": sorted(e["name"] for e in app.get("env", []) if "valueFrom" in e),
}))
