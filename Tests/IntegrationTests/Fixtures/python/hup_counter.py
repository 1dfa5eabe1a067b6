"""Writes its pid to argv[1], then appends a line to argv[2] for every SIGHUP until SIGTERM:
a stand-in for a program that reloads its token file on SIGHUP."""
import os
import signal
import sys

pid_file, log = sys.argv[1], sys.argv[2]
running = True


def hup(*_):
    with open(log, "a") as out:
        out.write("hup\n")


def term(*_):
    global running
    running = False


signal.signal(signal.SIGHUP, hup)
signal.signal(signal.SIGTERM, term)
# The test runner's threads block signals and a spawned child inherits that mask.
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP, signal.SIGTERM})
with open(pid_file + ".tmp", "w") as out:
    out.write(f"{os.getpid()}\n")
os.rename(pid_file + ".tmp", pid_file)
while running:
    signal.pause()
