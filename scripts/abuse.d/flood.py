"""The attacker of the loopback-flood scenario: runs as an unprivileged uid and, for a
bounded time, opens and closes loopback TCP connections to the compat port as fast as it
can (half of them reset), holds up to --hold half-sent requests open, and asks for a
token now and then (it is allowed none: any token it gets is a wrong grant).
Prints one JSON object.

usage: flood.py PORT [--duration S] [--threads N] [--hold N] [--host H]
"""
import argparse
import json
import socket
import struct
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("port", type=int)
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--duration", type=float, default=5)
p.add_argument("--threads", type=int, default=3)
p.add_argument("--hold", type=int, default=200)
args = p.parse_args()
family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
stop = time.monotonic() + args.duration
lock = threading.Lock()
counts = {"connections": 0, "connectErrors": 0, "asked": 0, "grants": 0, "held": 0, "answers": {}}
LINGER0 = struct.pack("ii", 1, 0)


def churn(reset):
    while time.monotonic() < stop:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(1)
        try:
            s.connect((args.host, args.port))
            if reset:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
            with lock:
                counts["connections"] += 1
        except OSError:
            with lock:
                counts["connectErrors"] += 1
        finally:
            s.close()


def hold():
    held = []
    while time.monotonic() < stop:
        if len(held) < args.hold:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(1)
            try:
                s.connect((args.host, args.port))
                s.sendall(b"GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://storage.azure.com HTTP/1.1\r\nMetad")
                held.append(s)
                with lock:
                    counts["held"] = max(counts["held"], len(held))
            except OSError:
                s.close()
                with lock:
                    counts["connectErrors"] += 1
        else:
            time.sleep(0.05)
    for s in held:
        s.close()


def ask():
    while time.monotonic() < stop:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect((args.host, args.port))
                s.sendall((f"GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://storage.azure.com HTTP/1.1\r\n"
                           f"Host: 127.0.0.1:{args.port}\r\nMetadata: true\r\nConnection: close\r\n\r\n").encode())
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            status = data[9:12].decode(errors="replace") or "none"
            with lock:
                counts["asked"] += 1
                counts["answers"][status] = counts["answers"].get(status, 0) + 1
                if b"access_token" in data and status == "200":
                    counts["grants"] += 1
        except OSError as error:
            with lock:
                counts["answers"][type(error).__name__] = counts["answers"].get(type(error).__name__, 0) + 1
        time.sleep(0.05)


threads = [threading.Thread(target=churn, args=(i % 2 == 1,)) for i in range(args.threads)]
threads += [threading.Thread(target=hold), threading.Thread(target=ask)]
for t in threads:
    t.start()
for t in threads:
    t.join(args.duration + 10)
print(json.dumps(counts))
