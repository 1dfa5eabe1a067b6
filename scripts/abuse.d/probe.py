"""The innocent caller: runs as its own uid and asks for its token again and again,
on new connections, over the Unix socket and (optionally) the IMDS compat endpoint,
timing every answer. Prints one JSON object when done.

usage: probe.py --unix SOCK --identity NAME [--compat-port P] [--duration S] [--interval MS] [--timeout S]
"""
import argparse
import json
import re
import socket
import time

SCOPE = "https://storage.azure.com/.default"
RESOURCE = "https://storage.azure.com"

p = argparse.ArgumentParser()
p.add_argument("--unix")
p.add_argument("--identity", default="innocent")
p.add_argument("--compat-port", type=int)
p.add_argument("--compat-host", default="127.0.0.1")
p.add_argument("--duration", type=float, default=5)
p.add_argument("--interval", type=float, default=20, help="milliseconds between requests")
p.add_argument("--timeout", type=float, default=5)
p.add_argument("--count", type=int, default=0, help="stop after this many requests per channel (0: duration only)")
args = p.parse_args()


def unix_once():
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(args.timeout)
        s.connect(args.unix)
        s.sendall((json.dumps({"op": "token", "identity": args.identity, "scope": SCOPE, "id": 1}) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data.decode()) if data else {}
    if not reply.get("ok"):
        raise RuntimeError(f"not ok: {data[:160]!r}")


def compat_once():
    family = socket.AF_INET6 if ":" in args.compat_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(args.timeout)
        s.connect((args.compat_host, args.compat_port))
        s.sendall((f"GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource={RESOURCE} HTTP/1.1\r\n"
                   f"Host: 127.0.0.1:{args.compat_port}\r\nMetadata: true\r\nConnection: close\r\n\r\n").encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    if not re.match(rb"HTTP/1\.1 200", data) or b"access_token" not in data:
        raise RuntimeError(f"not granted: {data[:160]!r}")


channels = {"unix": unix_once} if args.unix else {}
if args.compat_port:
    channels["compat"] = compat_once
results = {name: {"n": 0, "ok": 0, "failed": 0, "errors": [], "lat": []} for name in channels}
deadline = time.monotonic() + args.duration
while time.monotonic() < deadline:
    for name, once in channels.items():
        r = results[name]
        if args.count and r["n"] >= args.count:
            continue
        start = time.monotonic()
        try:
            once()
            r["ok"] += 1
        except Exception as error:  # noqa: BLE001 - every failure counts
            r["failed"] += 1
            if len(r["errors"]) < 3:
                r["errors"].append(f"{type(error).__name__}: {error}"[:200])
        r["n"] += 1
        r["lat"].append(round((time.monotonic() - start) * 1000, 3))
    if args.count and all(r["n"] >= args.count for r in results.values()):
        break
    time.sleep(args.interval / 1000)
print(json.dumps(results))
