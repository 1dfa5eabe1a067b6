"""Reads a sink's file in a tight loop until SIGTERM, then writes every distinct content it
saw (one per line, hex) to the output file, after a first line with the number of reads.
A torn write would show up as a content that is not one of the tokens the broker served."""
import os
import signal
import sys

path, output, ready = sys.argv[1], sys.argv[2], sys.argv[3]
stopping = False


def stop(*_):
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, stop)
# The test runner's threads block SIGTERM and a spawned child inherits that mask.
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
seen = set()
reads = 0
with open(ready, "w") as marker:
    marker.write("reading\n")
while not stopping:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        continue
    reads += 1
    seen.add(data)
with open(output + ".tmp", "w") as out:
    out.write(f"{reads}\n")
    for data in sorted(seen):
        out.write(data.hex() + "\n")
os.rename(output + ".tmp", output)
