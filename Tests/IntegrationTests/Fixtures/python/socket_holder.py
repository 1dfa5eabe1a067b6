"""Holds a listening Unix socket the way systemd's .socket unit does and restarts
the daemon on it again and again, while a client loop sends requests through the
same socket. Prints a JSON summary: restarts, requests, failures, exit codes.

With --fdstore it also plays the service manager's file-descriptor store
(FileDescriptorStoreMax=): it receives FDSTORE=1/FDSTOREREMOVE=1 messages with their
descriptors (SCM_RIGHTS) on the notify socket, keeps them by FDNAME, and passes them to
the next process after the listening socket, with LISTEN_FDS/LISTEN_FDNAMES, as systemd
does. --tamper=unsealed|flipped replaces the stored token cache before each restart with
an unsealed copy, or a sealed copy with one byte flipped. --next-config=PATH starts every
process after the first with `--config PATH` instead (a configuration changed across restarts).
--crash stops each process with SIGKILL instead of SIGTERM, once it has stored something
(what it stores while running, not at shutdown, is all the next process gets).

usage: socket_holder.py SOCKET RESTARTS REQUEST_JSON [--fdstore] [--tamper=MODE] [--next-config=PATH] [--crash] -- DAEMON ARGS...
"""
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time

path, restarts, request = sys.argv[1], int(sys.argv[2]), sys.argv[3]
options = sys.argv[4:sys.argv.index("--")]
daemon = sys.argv[sys.argv.index("--") + 1:]
fdstore = "--fdstore" in options
tamper = next((o.split("=", 1)[1] for o in options if o.startswith("--tamper=")), None)
next_config = next((o.split("=", 1)[1] for o in options if o.startswith("--next-config=")), None)
crash = "--crash" in options
spawned = 0
stored_before = 0

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


# The file-descriptor store: [name, fd] in the order received, as PID 1 keeps it.
store = []
store_log = {"stored": 0, "removed": 0, "unsealed": 0, "passed": 0, "tampered": 0}
ALL_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def handle(message, fds):
    """One notification; returns whether it said READY=1."""
    fields = dict(line.split("=", 1) for line in message.decode(errors="replace").split("\n") if "=" in line)
    name = fields.get("FDNAME", "stored")
    if fdstore and fields.get("FDSTOREREMOVE") == "1":
        for entry in [e for e in store if e[0] == name]:
            os.close(entry[1])
            store.remove(entry)
            store_log["removed"] += 1
    if fdstore and fields.get("FDSTORE") == "1":
        for fd in fds:
            # PID 1 drops duplicates of a file it holds already (same inode).
            if any(os.fstat(held).st_ino == os.fstat(fd).st_ino for _, held in store):
                os.close(fd)
                continue
            if fcntl.fcntl(fd, fcntl.F_GET_SEALS) & ALL_SEALS != ALL_SEALS:
                store_log["unsealed"] += 1
            store.append([name, fd])
            store_log["stored"] += 1
    else:
        for fd in fds:
            os.close(fd)
    return fields.get("READY") == "1"


ready = threading.Semaphore(0)
store_lock = threading.Lock()
store_changed = threading.Condition(store_lock)


def receiver():
    """Handles notifications in order as they come, as PID 1 does: a daemon's BARRIER=1
    (sd_notify_barrier) returns once everything it sent before was handled."""
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(notify, 4096, 16)
        except OSError:
            return  # closed
        if not message and not fds:
            return
        with store_changed:
            if handle(message, fds):
                ready.release()
            store_changed.notify_all()


def wait_ready():
    if not ready.acquire(timeout=60):
        raise TimeoutError("no READY=1 within 60 s")


def tampered(fd):
    """A copy of a stored memfd, unsealed or with one byte flipped (sealed)."""
    data = bytearray(os.pread(fd, os.fstat(fd).st_size, 0))
    copy = os.memfd_create("tokencache", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    if tamper == "flipped":
        data[-10] ^= 0x01
    os.write(copy, bytes(data))
    if tamper == "flipped":
        fcntl.fcntl(copy, fcntl.F_ADD_SEALS, ALL_SEALS)
    store_log["tampered"] += 1
    return copy


def spawn():
    with store_lock:
        return spawn_locked()


def spawn_locked():
    global spawned
    argv = list(daemon)
    if next_config and spawned > 0:
        argv[argv.index("--config") + 1] = next_config
    spawned += 1
    global stored_before
    stored_before = store_log["stored"]
    if tamper:
        for entry in store:
            if entry[0] == "tokencache":
                replacement = tampered(entry[1])
                os.close(entry[1])
                entry[1] = replacement
    passed = [listener.fileno()] + [fd for _, fd in store]
    names = ["broker"] + [name for name, _ in store]
    store_log["passed"] += len(store)
    pid = os.fork()
    if pid == 0:
        # The child: the socket becomes fd 3, stored descriptors 4, 5, …, and LISTEN_PID
        # names this very process. Copied above the targets first, so none is overwritten.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in passed]
        for target, fd in enumerate(high, start=3):
            os.dup2(fd, target)  # inheritable
        env = dict(os.environ, LISTEN_FDS=str(len(passed)), LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=":".join(names), NOTIFY_SOCKET=notify_path)
        os.execve(argv[0], argv, env)
    return pid


stop = threading.Event()
first_answer = threading.Event()
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
            first_answer.set()
            if not reply.get("ok"):
                counts["failures"] += 1
                counts["errors"].append(answer.decode()[:200])
        except Exception as error:  # noqa: BLE001 - every failure counts
            counts["requests"] += 1
            counts["failures"] += 1
            counts["errors"].append(repr(error)[:200])


exit_codes = []
receive_thread = threading.Thread(target=receiver, daemon=True)
receive_thread.start()
child = spawn()
wait_ready()
client = threading.Thread(target=client_loop)
client.start()
# The first process has answered once (its exchange is done) before the restarts begin.
first_answer.wait(timeout=60)
try:
    for _ in range(restarts):
        time.sleep(0.4)
        if crash:
            with store_changed:
                if not store_changed.wait_for(lambda: store_log["stored"] > stored_before, timeout=60):
                    raise TimeoutError("the process stored nothing within 60 s")
        os.kill(child, signal.SIGKILL if crash else signal.SIGTERM)
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
    try:
        notify.shutdown(socket.SHUT_RDWR)  # ends the receiver's recv
    except OSError:
        pass
    receive_thread.join(timeout=10)
    with store_lock:
        store_log["held"] = len(store)
    for _, fd in store:
        os.close(fd)
    listener.close()
    notify.close()
    os.unlink(notify_path)

counts["errors"] = counts["errors"][:5]
print(json.dumps(dict(counts, restarts=restarts, exitCodes=exit_codes, fdstore=store_log)))
