#!/usr/bin/env python3
"""Two daemon builds side by side under pipelined NDJSON load, alternated, with bench/floor.c.

    python3 bench/pipelined_ab.py BEFORE/tokenbrokerd AFTER/tokenbrokerd [ROUNDS]

Run from the repository after `scripts/bench --quick` has compiled bench/.out (loadgen, floor);
the dev provider is taken from BEFORE's directory. Each round runs every point (1, 32 and 256
connections, depth 16; the request without an `id` as scripts/bench sends it, and with a fixed
`"id":7`, which makes the broker splice the `id` into every answer) on before, after and the
floor in turn, 1.5 s after 0.3 s of warm-up. Prints medians of req/s and of the server's CPU
per request (µs, warm-up included): on a shared machine the CPU figure is the steadier one.
"""
import json
import os
import statistics
import subprocess
import sys
import argparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def main():
    before, after = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    args = argparse.Namespace(daemon=before, build_kind="release", tools="bench/.out", quick=True, keep=False, json_out=None,
                              profile=None, nio_floor=None, event_loop_threads=None, nginx_workers="auto")
    suite = run.Suite(args)
    first_request = json.dumps({"op": "token", "scope": run.SCOPE}, separators=(",", ":"))
    try:
        suite.start_provider()
        servers = {}
        for name, binary in (("before", before), ("after", after)):
            sock, config = os.path.join(suite.workdir, name + ".sock"), os.path.join(suite.workdir, name + ".yaml")
            with open(config, "w") as f:
                f.write(suite.config_yaml(sock))
            child = suite.start(name, [binary, "--config", config, "--log-format", "text"])
            suite.wait_for(name, lambda: os.path.exists(sock) and child.wait_line("ready", timeout=0.01), child=child)
            servers[name] = (sock, child)
        first = [suite.ndjson([first_request], path=servers[name][0])[0] for name in servers][0]
        response = os.path.join(suite.workdir, "response.json")
        with open(response, "w") as f:
            f.write(first + "\n")
        floor_sock = os.path.join(suite.workdir, "floor.sock")
        floor = suite.start("floor", [os.path.join(args.tools, "floor"), floor_sock, response])
        suite.wait_for("floor", lambda: os.path.exists(floor_sock), child=floor)
        servers["floor"] = (floor_sock, floor)
        shapes = {"no id": None, '"id":7': json.dumps({"op": "token", "scope": run.SCOPE, "id": 7}, separators=(",", ":"))}
        results = {}
        for number in range(rounds):
            for conns in (1, 32, 256):
                for shape, request in shapes.items():
                    for name, (sock, child) in servers.items():
                        if name == "floor" and request:
                            continue  # the floor sends its one answer whatever it is asked
                        argv = [os.path.join(args.tools, "loadgen"), "--unix", sock, "--mode", "ndjson", "-c", str(conns), "-p", "16",
                                "-d", "1.5", "-w", "0.3", "--json"] + (["--request", request] if request else [])
                        ticks = suite.cpu_ticks([child.proc.pid])
                        out = json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=100).stdout)
                        used = suite.cpu_ticks([child.proc.pid]) - ticks
                        cpu = used / os.sysconf("SC_CLK_TCK") * 1e6 / out["answeredInclWarmup"]
                        results.setdefault((conns, shape, name), []).append((out["rps"], cpu))
            run.log(f"round {number + 1} of {rounds} done")
        print("| conns ×16 | request | server | req/s (median) | µs CPU/req (median) | runs (req/s / µs) |")
        print("|---|---|---|---:|---:|---|")
        for (conns, shape, name), runs in results.items():
            print(f"| {conns} | {shape} | {name} | {statistics.median(r[0] for r in runs) / 1e3:.0f}k | "
                  f"{statistics.median(r[1] for r in runs):.2f} | " + ", ".join(f"{r[0] / 1e3:.0f}k / {r[1]:.2f}" for r in runs) + " |")
    finally:
        suite.cleanup()


if __name__ == "__main__":
    main()
