#!/usr/bin/env python3
"""Two daemon builds side by side under pipelined NDJSON load, alternated, with bench/floor.c.

    python3 bench/pipelined_ab.py BEFORE/tokenbrokerd AFTER/tokenbrokerd [ROUNDS] [--http]

Run from the repository after `scripts/bench --quick` has compiled bench/.out (loadgen, floor);
the dev provider is taken from BEFORE's directory. Each round runs every point (1, 32 and 256
connections, depth 16; the request without an `id` as scripts/bench sends it, and with a fixed
`"id":7`, which makes the broker splice the `id` into every answer) on before, after and the
floor in turn, 1.5 s after 0.3 s of warm-up. Prints medians of req/s and of the server's CPU
per request (µs, warm-up included): on a shared machine the CPU figure is the steadier one.

With `--http`: the shape of issue 20's HTTP target instead — `GET /v1/token` one at a time on
32 connections (as `scripts/bench`'s loadgen rows) on before, after, the C floor (`floor.c
--http`), nginx (`worker_processes auto`) and nginx with one worker, 3 s after 0.5 s of warm-up
per point; the ratios to nginx are printed per round.
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
    http = "--http" in sys.argv[1:]
    positional = [arg for arg in sys.argv[1:] if arg != "--http"]
    before, after = positional[0], positional[1]
    rounds = int(positional[2]) if len(positional) > 2 else 3
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
        if http:
            return compare_http(suite, servers, response, json.dumps(json.loads(first)), args.tools, rounds)
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


def compare_http(suite, servers, response, body, tools, rounds):
    """Unpipelined GETs at 32 connections: before, after, two nginx configurations and the C
    floor (`floor.c --http`: the same answer from a fixed buffer) in turn."""
    floor_sock = os.path.join(suite.workdir, "floor-http.sock")
    floor = suite.start("floor-http", [os.path.join(tools, "floor"), floor_sock, response, "--http"])
    suite.wait_for("floor-http", lambda: os.path.exists(floor_sock), child=floor)
    servers["floor-http"] = (floor_sock, floor)
    nginx = next(path for path in ("/usr/sbin/nginx", "/usr/bin/nginx") if os.path.exists(path))
    for name, workers in (("nginx", "auto"), ("nginx-1w", 1)):
        sock = suite.start_nginx(nginx, name, workers, body)
        servers[name] = (sock, None)
    results = {}
    for number in range(rounds):
        for name, (sock, _) in servers.items():
            pids = suite.child_pids(name)
            ticks = suite.cpu_ticks(pids)
            argv = [os.path.join(tools, "loadgen"), "--unix", sock, "--mode", "http", "-c", "32", "-p", "1", "-d", "3", "-w", "0.5", "--json"]
            out = json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=100).stdout)
            cpu = (suite.cpu_ticks(pids) - ticks) / os.sysconf("SC_CLK_TCK") * 1e6 / out["answeredInclWarmup"]
            results.setdefault(name, []).append((out["rps"], cpu))
        last = {name: runs[-1][0] for name, runs in results.items()}
        run.log(f"round {number + 1} of {rounds}: " + ", ".join(
            f"{ours} {last[ours] / last['nginx']:.2f} × nginx, {last[ours] / last['nginx-1w']:.2f} × one worker"
            for ours in ("before", "after", "floor-http")))
    print("| HTTP, 32 conns, one at a time | req/s (median) | µs CPU/req (median) | × nginx (median of rounds) | × nginx, one worker | runs (req/s / µs) |")
    print("|---|---:|---:|---:|---:|---|")
    for name, runs in results.items():
        ratios = [runs[i][0] / results["nginx"][i][0] for i in range(len(runs))]
        one = [runs[i][0] / results["nginx-1w"][i][0] for i in range(len(runs))]
        print(f"| {name} | {statistics.median(r[0] for r in runs) / 1e3:.0f}k | {statistics.median(r[1] for r in runs):.2f} | "
              f"{statistics.median(ratios):.2f} | {statistics.median(one):.2f} | " + ", ".join(f"{r[0] / 1e3:.0f}k / {r[1]:.2f}" for r in runs) + " |")


if __name__ == "__main__":
    main()
