"""Hands a connected socket to another uid's process with SCM_RIGHTS.

usage: fdpass.py send RENDEZVOUS unix:SOCK|tcp:PORT
       fdpass.py receive RENDEZVOUS unix|tcp IDENTITY_OR_CLIENT_QUERY PORT
The sender (one uid) connects to the broker, then passes the connected fd through the
RENDEZVOUS Unix socket. The receiver (another uid) binds RENDEZVOUS, takes the fd and
asks the broker for a token on it, then prints the answer.
"""
import array
import json
import os
import socket
import sys
import time

role, rendezvous = sys.argv[1], sys.argv[2]
if role == "send":
    kind, _, where = sys.argv[3].partition(":")
    if kind == "unix":
        broker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        broker.connect(where)
    else:
        broker = socket.create_connection(("127.0.0.1", int(where)), timeout=5)
    deadline = time.monotonic() + 10
    while True:
        try:
            link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            link.connect(rendezvous)
            break
        except OSError:
            link.close()
            if time.monotonic() > deadline:
                sys.exit("no receiver")
            time.sleep(0.02)
    link.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [broker.fileno()]))])
    link.recv(1)  # wait until the receiver is done
    sys.exit(0)

kind, what, port = sys.argv[3], sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else "0"
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(rendezvous)
os.chmod(rendezvous, 0o777)
server.listen(1)
server.settimeout(10)
link, _ = server.accept()
fds = array.array("i")
msg, ancdata, _, _ = link.recvmsg(1, socket.CMSG_LEN(fds.itemsize))
for level, typ, data in ancdata:
    if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
        fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
conn = socket.socket(fileno=fds[0])
conn.settimeout(10)
if kind == "unix":
    conn.sendall((json.dumps({"op": "token", "identity": what, "scope": "https://storage.azure.com/.default", "id": 1}) + "\n").encode())
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
else:
    conn.sendall((f"GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://storage.azure.com{what} HTTP/1.1\r\n"
                  f"Host: 127.0.0.1:{port}\r\nMetadata: true\r\nConnection: close\r\n\r\n").encode())
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
link.sendall(b"k")
print(json.dumps({"uid": os.getuid(), "answer": data.decode(errors="replace")[-2000:]}))
