"""Connect, then exec the allowed binary. Runs as an unprivileged uid.

usage: connect_exec.py SOCK IDENTITY ALLOWED_BINARY DELAY_MS
This process (python: not the allowed executable) connects to the broker, forks, and
execs ALLOWED_BINARY (a copy of sleep) DELAY_MS after connecting. The forked child keeps
the connection, waits until its parent's /proc/PID/exe is the allowed binary, then asks
for IDENTITY's token and prints the answer line. What the broker attested is what it read
for the connecting PID: the program that connected, or what it exec'd into.
"""
import json
import os
import socket
import sys
import time

path, identity, allowed, delay_ms = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(path)
parent = os.getpid()
child = os.fork()
if child == 0:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{parent}/exe") == allowed:
                break
        except OSError:
            pass
        time.sleep(0.001)
    s.sendall((json.dumps({"op": "token", "identity": identity, "scope": "https://storage.azure.com/.default", "id": 1}) + "\n").encode())
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as error:
        data = json.dumps({"harness": str(error)}).encode()
    sys.stdout.write(data.decode(errors="replace").strip() + "\n")
    sys.stdout.flush()
    os._exit(0)
if delay_ms > 0:
    time.sleep(delay_ms / 1000)
os.execv(allowed, [allowed, "0.6"])
