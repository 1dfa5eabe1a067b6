#!/usr/bin/env python3
"""The per-answer cost model (issue 20): instructions, system calls and allocator calls per cached answer.

Run through `scripts/bench cost` (root: strace attaches to the broker). A broker serving one
identity answers N cached-token requests on one connection, in four shapes: one request at a
time with the same line (the connection's memo repeats its answer), one at a time with a new
`id` each (the memo's bytes with the id spliced in), pipelined 16 deep with new ids, and
pipelined 16 deep with the same line (what `scripts/bench` sends).
Allocator calls come from an LD_PRELOAD counter (bench/malloc_count.c, read on SIGWINCH before
and after the window); system calls from `strace -c -f` attached for a second window of the same
shape; user-space instructions from a second broker under valgrind's callgrind (every thread,
the log writer's included), zeroed before and dumped after a window of each shape, after 1,600
warm-up answers that use up the audit log's burst (at full speed nearly every audit record is
only counted). All are exact counts, divided by the number of answers: nothing here is timed,
so two builds compare on a noisy machine; the instruction count is the figure to watch for the
cost of our own code per answer.
"""
import argparse
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the benchmark suite's processes and helpers)

SHAPES = {
    "same line, one at a time": (False, 1),
    "new id each, one at a time": (True, 1),
    "new ids, pipelined 16 deep": (True, 16),
    "same line, pipelined 16 deep (scripts/bench's pipelined shape)": (False, 16),
}


class Cost(run.Suite):
    def start_counted_broker(self, counts):
        self.sock = os.path.join(self.workdir, "broker.sock")
        self.config = os.path.join(self.workdir, "config.yaml")
        with open(self.config, "w") as f:
            f.write(self.config_yaml(self.sock))
        env = dict(os.environ, LD_PRELOAD=self.args.shim, MALLOC_COUNT_FILE=counts)
        self.broker = self.start("broker", [self.bin, "--config", self.config, "--log-format", "text"], env=env)
        self.wait_for("the broker socket", lambda: os.path.exists(self.sock) and self.broker.wait_line("ready", timeout=0.01),
                      child=self.broker)

    def start_instrumented_broker(self):
        """A second broker under callgrind, without debug information (valgrind cannot read
        the DWARF 5 lld writes); its socket and callgrind's output prefix."""
        binary = os.path.join(self.workdir, "tokenbrokerd-nodebug")
        subprocess.run(["objcopy", "--strip-debug", self.bin, binary], check=True)
        sock = os.path.join(self.workdir, "callgrind.sock")
        config = os.path.join(self.workdir, "callgrind.yaml")
        with open(config, "w") as f:
            f.write(self.config_yaml(sock))
        out = os.path.join(self.workdir, "callgrind.out")
        child = self.start("callgrind", ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "--config", config,
                                         "--log-format", "text"])
        self.wait_for("the broker under callgrind", lambda: os.path.exists(sock) and child.wait_line("ready", timeout=0.01),
                      timeout=300, child=child)
        return child, sock, out

    def instructions(self, child, sock, out, new_ids, depth, count):
        """User-space instructions per answer: callgrind zeroed, `count` answers, dumped."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(300)
            connection.connect(sock)
            self.drive(connection, 1600, new_ids, depth)
            subprocess.run(["callgrind_control", "--zero", str(child.proc.pid)], check=True, capture_output=True)
            self.drive(connection, count, new_ids, depth)
            dumped = set(glob.glob(out + ".*"))
            subprocess.run(["callgrind_control", "--dump", str(child.proc.pid)], check=True, capture_output=True)
        for _ in range(600):
            for path in set(glob.glob(out + ".*")) - dumped:
                with open(path) as f:
                    totals = [line for line in f if line.startswith(("summary:", "totals:"))]
                if totals:
                    return int(totals[-1].split()[1]) / count
            time.sleep(0.1)
        raise RuntimeError("callgrind wrote no profile")

    def drive(self, connection, count, new_ids, depth):
        """`count` requests on `connection`, `depth` in flight; returns the answer bytes."""
        scope = run.SCOPE
        same = (json.dumps({"op": "token", "scope": scope}) + "\n").encode()
        received = 0
        buffer = b""
        sent = 0
        answered = 0
        while answered < count:
            batch = min(depth, count - sent) if answered == sent else 0
            if batch:
                lines = b"".join((json.dumps({"op": "token", "scope": scope, "id": sent + i}) + "\n").encode() if new_ids else same
                                 for i in range(batch))
                connection.sendall(lines)
                sent += batch
            chunk = connection.recv(1 << 20)
            if not chunk:
                raise RuntimeError("the broker closed the connection")
            received += len(chunk)
            buffer += chunk
            done = buffer.count(b"\n")
            if b'"ok":true' not in buffer[:buffer.find(b"\n") + 1] and done:
                raise RuntimeError(f"not ok: {buffer[:200]!r}")
            answered += done
            buffer = buffer[buffer.rfind(b"\n") + 1:]
        return received

    def counts(self, path):
        os.kill(self.broker.proc.pid, signal.SIGWINCH)
        for _ in range(500):
            try:
                with open(path) as f:
                    lines = f.read().split("\n")
            except FileNotFoundError:  # the handler has not written its first line yet
                lines = []
            if len([l for l in lines if l]) > self.samples:
                self.samples += 1
                return [int(x) for x in lines[self.samples - 1].split()]
            time.sleep(0.01)
        raise RuntimeError("the allocator counter did not answer SIGWINCH (is the shim loaded?)")

    def measure(self):
        counts = os.path.join(self.workdir, "malloc-counts")
        self.samples = 0
        self.start_provider()
        self.start_counted_broker(counts)
        n = self.args.requests
        shapes = {}
        for name, (new_ids, depth) in SHAPES.items():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(60)
                connection.connect(self.sock)
                self.drive(connection, 1000, new_ids, depth)  # the first answer, the memo, warm buffers
                before = self.counts(counts)
                answer_bytes = self.drive(connection, n, new_ids, depth)
                after = self.counts(counts)
                # The same shape again under strace: system calls per answer, by name.
                tracer = subprocess.Popen(["strace", "-c", "-f", "-q", "-p", str(self.broker.proc.pid)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                time.sleep(1.0)  # attached to every thread
                traced = n // 10
                self.drive(connection, traced, new_ids, depth)
                tracer.send_signal(signal.SIGINT)
                _, summary = tracer.communicate(timeout=60)
            calls = {}
            for line in summary.splitlines():
                fields = line.split()
                if len(fields) >= 5 and re.fullmatch(r"\d+", fields[3]) and fields[-1] not in ("total", "syscall"):
                    calls[fields[-1]] = int(fields[3])
            shapes[name] = {
                "answers": n,
                "mallocs": (after[0] - before[0]) / n,
                "frees": (after[1] - before[1]) / n,
                "reallocs": (after[2] - before[2]) / n,
                "answerBytes": answer_bytes / n,
                "syscalls": {k: v / traced for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v / traced >= 0.001},
            }
        instrumented = self.start_instrumented_broker()
        for name, (new_ids, depth) in SHAPES.items():
            shapes[name]["instructions"] = self.instructions(*instrumented, new_ids, depth, min(n, 8000))
        return {"build": self.build_kind, "daemon": self.bin, "machine": run.machine(), "shapes": shapes}


def report(r):
    lines = [f"build: {r['build']} ({r['daemon']}); machine: {r['machine']}", "",
             "| shape | instructions (user space) | allocations | frees | reallocs | answer bytes | system calls per answer |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, s in r["shapes"].items():
        calls = ", ".join(f"{k} {v:.3f}" for k, v in s["syscalls"].items()) or "—"
        lines.append(f"| {name} | {s['instructions']:,.0f} | {s['mallocs']:.2f} | {s['frees']:.2f} | {s['reallocs']:.2f} | {s['answerBytes']:.0f} | {calls} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--daemon", required=True)
    p.add_argument("--build-kind", required=True)
    p.add_argument("--shim", required=True, help="the compiled bench/malloc_count.c")
    p.add_argument("--tools", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".out"))
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json-out")
    args = p.parse_args()
    args.quick = False
    args.event_loop_threads = None
    return run.run_root_suite(Cost, args, report, "cost needs root (strace attaches to the broker)")


if __name__ == "__main__":
    sys.exit(main())
