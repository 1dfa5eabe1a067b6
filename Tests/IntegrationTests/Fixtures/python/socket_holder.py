"""Holds a listening Unix socket the way systemd's .socket unit does and restarts
the daemon on it again and again, while a client loop sends requests through the
same socket. Prints a JSON summary: restarts, requests, failures, exit codes.

usage: socket_holder.py SOCKET RESTARTS REQUEST_JSON -- DAEMON ARGS...
"""
import json
import os
import signal
import socket
import sys
import threading
import time

path, restarts, request = sys.argv[1], int(sys.argv[2]), sys.argv[3]
daemon = sys.argv[sys.argv.index("--") + 1:]

listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
if os.path.exists(path):
    os.unlink(path)
listener.bind(path)
listener.listen(1024)

# Like systemd, restart only a daemon that said READY=1 (a daemon killed while
# still starting has not trapped SIGTERM yet, which says nothing about restarts).
notify_path = path + ".notify"
if os.path.exists(notify_path):
    os.unlink(notify_path)
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(notify_path)
notify.settimeout(60)


def wait_ready():
    while b"READY=1" not in notify.recv(4096):
        pass


def spawn():
    pid = os.fork()
    if pid == 0:
        # The child: the socket becomes fd 3, and LISTEN_PID names this very process.
        os.dup2(listener.fileno(), 3)
        os.set_inheritable(3, True)
        env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="broker", NOTIFY_SOCKET=notify_path)
        os.execve(daemon[0], daemon, env)
    return pid


stop = threading.Event()
counts = {"requests": 0, "failures": 0, "errors": []}


def ask():
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(30)
        client.connect(path)
        client.sendall((request + "\n").encode())
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = client.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def client_loop():
    while not stop.is_set():
        try:
            answer = ask()
            reply = json.loads(answer.decode() or "{}")
            # A stopping broker answers an exchange it had to abandon `shutting_down`
            # (retryable, docs/protocol.md): a client asks again, and the next process
            # answers. Lost is a request that gets no token even then.
            # The next process may be stopped too before its first exchange ends (each lives
            # 0.4 s here, and a cold first exchange on a loaded machine takes longer): ask
            # again until one answers; the last process serves until this loop ends.
            for _ in range(restarts + 1):
                if (reply.get("error") or {}).get("code") != "shutting_down":
                    break
                counts["retried"] = counts.get("retried", 0) + 1
                answer = ask()
                reply = json.loads(answer.decode() or "{}")
            counts["requests"] += 1
            if not reply.get("ok"):
                counts["failures"] += 1
                counts["errors"].append(answer.decode()[:200])
        except Exception as error:  # noqa: BLE001 - every failure counts
            counts["requests"] += 1
            counts["failures"] += 1
            counts["errors"].append(repr(error)[:200])


exit_codes = []
child = spawn()
wait_ready()
client = threading.Thread(target=client_loop)
client.start()
try:
    for _ in range(restarts):
        time.sleep(0.4)
        os.kill(child, signal.SIGTERM)
        _, status = os.waitpid(child, 0)
        exit_codes.append(os.waitstatus_to_exitcode(status))
        child = spawn()
        wait_ready()
    time.sleep(0.4)
finally:
    stop.set()
    client.join(timeout=60)
    os.kill(child, signal.SIGTERM)
    _, status = os.waitpid(child, 0)
    exit_codes.append(os.waitstatus_to_exitcode(status))
    listener.close()
    notify.close()
    os.unlink(notify_path)

counts["errors"] = counts["errors"][:5]
print(json.dumps(dict(counts, restarts=restarts, exitCodes=exit_codes)))
