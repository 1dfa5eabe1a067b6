"""journald's native socket, for JournalLogHandlerTests. Run under `unshare -m --propagation
private`, so what it mounts is its own and vanishes with it: a tmpfs over /run/systemd, a datagram
socket at /run/systemd/journal/socket (where sd_journal_sendv sends), then the writer given as
argv[1] with this script's stdin, then every datagram the writer sent, parsed as journald parses
the native protocol (journald-native.c), printed as one JSON object."""
import base64
import json
import os
import select
import socket
import struct
import subprocess
import sys


def parse(data):
    """`NAME=value\\n`, or `NAME\\n` + 64-bit little-endian length + value + `\\n`."""
    fields, at = [], 0
    while at < len(data):
        end = data.index(b"\n", at)
        line = data[at:end]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            form, at = "text", end + 1
        else:
            name = line
            (size,) = struct.unpack_from("<Q", data, end + 1)
            start = end + 1 + 8
            value = data[start:start + size]
            if data[start + size:start + size + 1] != b"\n":
                raise ValueError(f"field {name!r}: no newline after its {size} bytes")
            form, at = "length-prefixed", start + size + 1
        if not name:
            raise ValueError("an empty field name")
        fields.append({"name": name.decode("latin-1"), "value": base64.b64encode(value).decode(), "form": form})
    return fields


def main():
    plan = sys.stdin.buffer.read()
    over = "/run/systemd" if os.path.isdir("/run/systemd") else "/run"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", "tmpfs", over], check=True)
    os.makedirs("/run/systemd/journal")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("/run/systemd/journal/socket")
    server.setblocking(False)
    writer = subprocess.Popen([sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    writer.stdin.write(plan)
    writer.stdin.close()
    # Read while the writer runs (a full queue would block its sends); all it sent is queued once it has exited.
    exited, datagrams = os.pidfd_open(writer.pid), []
    while True:
        ready, _, _ = select.select([server, exited], [], [])
        while True:
            try:
                data, ancillary, flags, _ = server.recvmsg(1 << 22, socket.CMSG_SPACE(4))
            except BlockingIOError:
                break
            if flags & socket.MSG_TRUNC or ancillary:
                raise ValueError("a record too large for a datagram (sent as a memfd), which this reader does not take")
            datagrams.append(data)
        if exited in ready:
            break
    site = writer.stdout.read().decode()
    json.dump({"status": writer.wait(), "site": site, "records": [parse(d) for d in datagrams]}, sys.stdout)


main()
