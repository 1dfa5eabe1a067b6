"""Starts the daemon as systemd starts a service whose file-descriptor store holds one
sealed memfd and which has no socket unit: fd 3 is the memfd, LISTEN_FDS=1,
LISTEN_FDNAMES=tokencache. The memfd holds TEXT (not a cache snapshot).

usage: with_stored_memfd.py TEXT -- DAEMON ARGS...
"""
import fcntl
import os
import sys

text = sys.argv[1]
daemon = sys.argv[sys.argv.index("--") + 1:]
memfd = os.memfd_create("tokencache", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
os.write(memfd, text.encode())
fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
if memfd == 3:
    os.set_inheritable(3, True)  # dup2(3, 3) would leave it close-on-exec
else:
    os.dup2(memfd, 3)  # inheritable
env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="tokencache")
env.pop("NOTIFY_SOCKET", None)
os.execve(daemon[0], daemon, env)
