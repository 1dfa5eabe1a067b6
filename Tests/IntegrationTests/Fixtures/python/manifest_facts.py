"""Prints what the sidecar recipe's manifests promise each other, as JSON: the
broker's config.yaml (from the ConfigMap), the app container's environment
(literal values only) and the sidecar's probe commands.

usage: manifest_facts.py MANIFEST.yaml
"""
import json
import sys

import yaml

documents = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
config = next(d for d in documents if d["kind"] == "ConfigMap")["data"]["config.yaml"]
pod = next(d for d in documents if d["kind"] == "Deployment")["spec"]["template"]["spec"]
sidecar = next(c for c in pod["initContainers"] if c.get("restartPolicy") == "Always")
app = pod["containers"][0]
print(json.dumps({
    "config": config,
    "appEnvironment": {e["name"]: e["value"] for e in app.get("env", []) if "value" in e},
    "probes": {kind: sidecar[kind]["exec"]["command"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")},
}))
