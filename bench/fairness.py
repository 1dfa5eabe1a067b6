#!/usr/bin/env python3
"""Fairness without a per-request bucket (issue 20). Run as root through scripts/bench fairness.

A broker in its default configuration (limits as shipped: requestsPerSecondPerUID 1000, one
event loop) serves one identity every uid may use. This process's uid (root) floods the
socket with cached-token requests from bench/loadgen (C, epoll, closed loop, N connections)
while a second uid (65534, through setpriv) asks for the same cached token one request at a
time on its own connection. Prints the second uid's latency alone and under the flood, and
what the flood got (answers per second, and how many were not ok: throttled would count).
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the benchmark suite's processes and helpers)

PROBE_UID = 65534

# One connection, one request at a time, each timed from send to its answer's newline.
PROBE = r"""
import json, socket, sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
line = json.dumps({"op": "token", "scope": "https://storage.azure.com/.default"}).encode() + b"\n"
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(path)
times, bad = [], 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    start = time.perf_counter_ns()
    s.sendall(line)
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("the broker closed the probe's connection")
        data += chunk
    times.append(time.perf_counter_ns() - start)
    bad += b'"ok":true' not in data
times.sort()
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] / 1e6
print(json.dumps({"requests": len(times), "notOk": bad, "p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": times[-1] / 1e6}))
"""


class Fairness(run.Suite):
    def config_yaml(self, socket_path, max_scopes=64):
        e = self.endpoints
        limits = [f"eventLoopThreads: {self.args.event_loop_threads}"] if self.args.event_loop_threads else []
        if self.args.requests_per_second is not None:
            limits.append(f"requestsPerSecondPerUID: {self.args.requests_per_second}")
        threads = f"limits: {{ {', '.join(limits)} }}\n" if limits else ""
        return (
            f"socket: {{ path: {socket_path} }}\n"
            f"upstream: {{ caFile: {e['caFile']} }}\n"
            f"log: {{ level: info }}\n"
            f"{threads}"
            f"identities:\n"
            f"  - name: default\n"
            f"    source: {{ file: {e['tokenFile']} }}\n"
            f"    exchange:\n"
            f"      entra: {{ tenantId: \"{e['tenantId']}\", clientId: \"{e['clientId']}\", authorityHost: \"{e['authorityHost']}\" }}\n"
            f"    allow: [ {{ any: true }} ]\n"
        )

    def probe(self, seconds):
        argv = ["setpriv", "--reuid", str(PROBE_UID), "--regid", str(PROBE_UID), "--clear-groups",
                sys.executable, "-c", PROBE, self.sock, str(seconds)]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        if out.returncode != 0:
            raise RuntimeError(f"probe failed: {out.stderr}")
        return json.loads(out.stdout)

    def measure(self):
        self.start_provider()
        self.start_broker()
        # The second uid reaches the socket: the work directory is 0700, the socket 0660.
        os.chmod(self.workdir, 0o755)
        os.chmod(self.sock, 0o666)
        first = self.ndjson(['{"op":"token","scope":"%s"}' % run.SCOPE])
        if '"ok":true' not in first[0]:
            raise RuntimeError(f"the first token request failed: {first[0]}")
        seconds = self.args.seconds
        alone = self.probe(seconds)
        flood = {}
        loader = threading.Thread(target=lambda: flood.update(
            self.loadgen(self.sock, "ndjson", self.args.conns, 1, duration=seconds + 1.0, warmup=0.5)))
        loader.start()
        time.sleep(1.0)  # the flood's warm-up and first measured half second
        loaded = self.probe(seconds)
        loader.join()
        return {"build": self.build_kind, "daemon": self.bin, "requestsPerSecondPerUID": self.args.requests_per_second, "machine": run.machine(), "conns": self.args.conns, "seconds": seconds,
                "alone": alone, "loaded": loaded, "flood": flood}


def report(r):
    f, a, l = r["flood"], r["alone"], r["loaded"]
    lines = [
        f"build: {r['build']} ({r['daemon']}); limits.requestsPerSecondPerUID: "
        f"{'default' if r['requestsPerSecondPerUID'] is None else r['requestsPerSecondPerUID']}; machine: {r['machine']}",
        f"flood (uid 0, {r['conns']} connections, loadgen): {f['rps']:.0f} answers/s, "
        f"{f['ok']} ok, {f['errors']} not ok, p50 {f['p50us'] / 1000:.2f} ms, p99 {f['p99us'] / 1000:.2f} ms"
        if "p50us" in f else f"flood: {f}",
        "",
        "| uid 65534, one request at a time | requests | not ok | p50 | p90 | p99 | max |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, x in (("alone", a), (f"while uid 0 floods ({r['conns']} conns)", l)):
        lines.append(f"| {name} | {x['requests']} | {x['notOk']} | {x['p50']:.3f} ms | {x['p90']:.3f} ms | {x['p99']:.3f} ms | {x['max']:.2f} ms |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--daemon", required=True)
    p.add_argument("--build-kind", required=True)
    p.add_argument("--tools", required=True, help="directory with the compiled loadgen")
    p.add_argument("--conns", type=int, default=32, help="connections of the flooding uid")
    p.add_argument("--seconds", type=float, default=10.0, help="how long each probe runs")
    p.add_argument("--event-loop-threads", type=int)
    p.add_argument("--requests-per-second", type=int,
                   help="limits.requestsPerSecondPerUID (default: not set, the shipped 1000); 0 runs a build from before "
                        "the change with its limit off, which serves cached answers the same way")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json-out")
    args = p.parse_args()
    args.quick = False
    return run.run_root_suite(Fairness, args, report, "fairness needs root (it runs the second client as uid 65534)")


if __name__ == "__main__":
    sys.exit(main())
