#!/usr/bin/env python3
"""User-space instructions per cached answer (NDJSON or HTTP, pipelined or one at a time),
counted by callgrind: exact enough to compare builds on a machine too busy for timings.

    python3 bench/answer_instructions.py [--http] [--depth N] [--keep] DAEMON [DAEMON...]

Each daemon (a release build; its debug info is stripped into a copy, valgrind 3.19 cannot read
it) runs under `valgrind --tool=callgrind --instr-atstart=no` in config mode against the dev
provider found beside the first. On one connection: 6,400 requests to warm up, then 16,000 counted
(instrumentation on only for those), 16 in flight, first the same line again and again (no `id`,
as scripts/bench sends it), then a new `id` each. With `--http`: the same `GET /v1/token` again
and again instead (keep-alive, 16 in flight). `--depth N`: N in flight instead of 16 (1: one at a
time, as `scripts/bench`'s unpipelined rows ask). Prints the daemon's instructions (all its
threads) per answer. Run from the repository.
"""
import argparse
import glob
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

COUNTED = 16000
# Enough to use up the audit log's burst (200 records) before counting, even when each record
# stands for a run of 16 identical answers: at full speed nearly every record is only counted.
WARM_UP = 6400
DEPTH = 16


HTTP_REQUEST = f"GET /v1/token?scope={urllib.parse.quote(run.SCOPE, safe='')} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
HTTP_ANSWER = b"HTTP/1.1 200"


def drive_http(connection, count):
    sent = answered = 0
    pending = b""
    while answered < count:
        if answered == sent:
            connection.sendall(HTTP_REQUEST * DEPTH)
            sent += DEPTH
        chunk = connection.recv(1 << 20)
        if not chunk:
            raise RuntimeError("the broker closed the connection")
        pending += chunk
        answered += pending.count(HTTP_ANSWER)
        # Keep what may be the start of an answer's status line cut by the read.
        pending = pending[-(len(HTTP_ANSWER) - 1):]


def drive(connection, count, new_ids):
    if new_ids is None:
        return drive_http(connection, count)
    same = (json.dumps({"op": "token", "scope": run.SCOPE}, separators=(",", ":")) + "\n").encode()
    sent = answered = 0
    pending = b""
    while answered < count:
        if answered == sent:
            connection.sendall(b"".join(
                (json.dumps({"op": "token", "scope": run.SCOPE, "id": sent + i}, separators=(",", ":")) + "\n").encode() if new_ids else same
                for i in range(DEPTH)))
            sent += DEPTH
        chunk = connection.recv(1 << 20)
        if not chunk:
            raise RuntimeError("the broker closed the connection")
        pending += chunk
        answered += pending.count(b"\n")
        pending = pending[pending.rfind(b"\n") + 1:]


def main():
    global DEPTH
    parser = argparse.ArgumentParser(description="user-space instructions per answer, counted by callgrind")
    parser.add_argument("--http", action="store_true", help="repeated GET /v1/token instead of NDJSON lines")
    parser.add_argument("--depth", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (its callgrind-N.out.* for callgrind_annotate)")
    parser.add_argument("daemons", nargs="+", metavar="DAEMON")
    options = parser.parse_args()
    http, daemons, DEPTH = options.http, options.daemons, max(1, options.depth)
    args = argparse.Namespace(daemon=daemons[0], build_kind="release", tools="bench/.out", quick=True, keep=options.keep, json_out=None,
                              profile=None, nio_floor=None, event_loop_threads=None, nginx_workers="auto")
    suite = run.Suite(args)
    try:
        suite.start_provider()
        for number, daemon in enumerate(daemons):
            stripped = os.path.join(suite.workdir, f"tokenbrokerd-{number}")
            subprocess.run(["strip", "--strip-debug", "-o", stripped, daemon], check=True)
            sock, config = os.path.join(suite.workdir, f"b{number}.sock"), os.path.join(suite.workdir, f"b{number}.yaml")
            with open(config, "w") as f:
                f.write(suite.config_yaml(sock))
            out = os.path.join(suite.workdir, f"callgrind-{number}.out")
            child = suite.start(f"callgrind-{number}", ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                                                        stripped, "--config", config, "--log-format", "text"])
            suite.wait_for("the broker under callgrind", lambda: os.path.exists(sock) and child.wait_line("ready", timeout=0.01),
                           timeout=120, child=child)
            with socket.socket(socket.AF_UNIX) as connection:
                connection.settimeout(120)
                connection.connect(sock)
                for new_ids in ((None,) if http else (False, True)):
                    drive(connection, WARM_UP, new_ids)
                    pid = str(child.proc.pid)
                    subprocess.run(["callgrind_control", "-z", pid], capture_output=True, check=True)
                    subprocess.run(["callgrind_control", "-i", "on", pid], capture_output=True, check=True)
                    drive(connection, COUNTED, new_ids)
                    subprocess.run(["callgrind_control", "-i", "off", pid], capture_output=True, check=True)
                    subprocess.run(["callgrind_control", "-d", pid], capture_output=True, check=True)
                    time.sleep(0.5)
                    dump = max(glob.glob(out + ".*"), key=lambda f: int(f.rsplit(".", 1)[1]))
                    with open(dump) as f:
                        total = next(int(line.split()[1]) for line in f if line.startswith("totals:"))
                    shape = "the same GET" if new_ids is None else "a new id each" if new_ids else "the same line"
                    depth = f"pipelined {DEPTH} deep" if DEPTH > 1 else "one at a time"
                    print(f"{daemon}: {shape}, {depth}: {total / COUNTED:,.0f} instructions per answer", flush=True)
            child.stop()
    finally:
        suite.cleanup()


if __name__ == "__main__":
    main()
