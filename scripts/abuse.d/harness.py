"""The harness of scripts/abuse: processes it starts (and always stops), the dev
provider, the daemon with a generated configuration, clients on the Unix socket and
on loopback TCP, and clients that run as other uids (setpriv).

Everything here is bounded: every socket has a timeout, every wait a deadline, every
child process is stopped by its PID when the scenario ends.
"""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import time
import urllib.request

SCOPE = "https://storage.azure.com/.default"
RESOURCE = "https://storage.azure.com"
HERE = os.path.dirname(os.path.abspath(__file__))

# Other local users (they need not exist in /etc/passwd: setpriv takes numbers).
ATTACKER = 4901   # allowed nothing, or only its own identity
INNOCENT = 4902   # allowed identity `innocent`
VICTIM = 4903     # allowed identity `victim`; the attacker wants its token


def log(message):
    print(f"abuse: {message}", file=os.sys.stderr, flush=True)


class HarnessError(Exception):
    """The harness could not set a scenario up (not a finding about the daemon)."""


class Skip(Exception):
    """The scenario cannot run here; the message says what it needs."""


# ------------------------------------------------------------------ processes
class Proc:
    """A child process with its output in a log file, in its own session."""

    def __init__(self, name, argv, workdir, env=None, pass_fds=(), stdin=subprocess.DEVNULL):
        self.name = name
        self.logpath = os.path.join(workdir, f"{name}.log")
        self.logfile = open(self.logpath, "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=self.logfile, stderr=self.logfile, env=env,
                                     start_new_session=True, pass_fds=pass_fds, close_fds=True)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
        if self.alive():
            self.signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.signal(signal.SIGKILL)
                self.wait(5)
        kill_group(self.pid)  # whatever it started in its session (setpriv'd clients' children)
        try:
            self.logfile.close()
        except OSError:
            pass
        return self.proc.returncode

    def log_bytes(self):
        try:
            return os.path.getsize(self.logpath)
        except OSError:
            return 0

    def log_text(self, start=0):
        try:
            with open(self.logpath, "rb") as f:
                f.seek(start)
                return f.read().decode(errors="replace")
        except OSError:
            return ""


def wait_until(what, predicate, timeout=20.0, proc=None, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and not proc.alive():
            raise HarnessError(f"{proc.name} exited (status {proc.proc.returncode}) while waiting for {what}; "
                               f"log: {proc.log_text()[-600:]}")
        time.sleep(interval)
    raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}")


def kill_group(pgid):
    """SIGKILL to the process group of a child started in its own session (its id is the child's PID)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(argv, timeout=30, env=None, input=None):
    """Runs a command to completion in its own session; after `timeout` it and everything it
    started are killed. Returns (status, stdout, stderr)."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
        status = proc.returncode
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, err = proc.communicate()
        status, err = 124, err + b"timed out"
    kill_group(proc.pid)  # a forked helper that outlived its parent
    return status, out.decode(errors="replace"), err.decode(errors="replace")


def as_uid(uid, argv, timeout=30, gid=None, env=None, input=None):
    """Runs `argv` as another uid (setpriv, no supplementary groups)."""
    command = ["/usr/bin/setpriv", "--reuid", str(uid), "--regid", str(gid if gid is not None else uid), "--clear-groups"] + argv
    return run(command, timeout=timeout, env=env, input=input)


def spawn_as_uid(uid, name, argv, workdir, env=None):
    """Starts `argv` as another uid in the background (a Proc)."""
    command = ["/usr/bin/setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"] + argv
    return Proc(name, command, workdir, env=env)


# ------------------------------------------------------------------ clients
def ndjson(path, request, timeout=10.0):
    """One NDJSON request on a new connection: (reply dict or None, seconds, error text)."""
    start = time.monotonic()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall((json.dumps(request) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        took = time.monotonic() - start
        if not data:
            return None, took, "closed without an answer"
        return json.loads(data.decode()), took, None
    except Exception as error:  # noqa: BLE001 - reported, never raised
        return None, time.monotonic() - start, f"{type(error).__name__}: {error}"


def raw_exchange(connect, payload, timeout=3.0, read_limit=1 << 20, half_close=False):
    """Sends `payload` on a new stream socket and reads until close or timeout.

    `connect` is a Unix socket path or a (host, port) tuple; `half_close` shuts the
    sending side after the payload (the peer answers, then closes). Returns (bytes read,
    how it ended: 'closed', 'timeout' or an error)."""
    family = socket.AF_UNIX if isinstance(connect, str) else (socket.AF_INET6 if ":" in connect[0] else socket.AF_INET)
    data = b""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(connect)
            try:
                s.sendall(payload)
                if half_close:
                    s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            while len(data) < read_limit:
                chunk = s.recv(65536)
                if not chunk:
                    return data, "closed"
                data += chunk
            return data, "limit"
    except socket.timeout:
        return data, "timeout"
    except OSError as error:
        return data, f"{type(error).__name__}: {error}"


def http_tcp(host, port, path, headers=None, timeout=10.0):
    """GET over loopback TCP (HTTP/1.1, Connection: close): (status, body bytes, seconds, error)."""
    start = time.monotonic()
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    for key, value in (headers or {}).items():
        head += f"{key}: {value}\r\n"
    data, how = raw_exchange((host, port), (head + "\r\n").encode(), timeout=timeout)
    took = time.monotonic() - start
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    if not m:
        return None, data, took, how
    body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    return int(m.group(1)), body, took, None


def imds_path(query=""):
    return f"/metadata/identity/oauth2/token?api-version=2018-02-01&resource={RESOURCE}{query}"


def percentile(values, p):
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(p / 100.0 * (len(ordered) - 1)))))
    return ordered[k]


# ------------------------------------------------------------------ the run
class Run:
    """One run of the suite: binaries copied aside, a work directory, the dev provider."""

    def __init__(self, bin_dir, python, quick, keep=False):
        self.quick = quick
        self.keep = keep
        self.python = python
        self.base = tempfile.mkdtemp(prefix="tb-abuse.", dir="/tmp")  # short: sun_path is 108 bytes
        os.chmod(self.base, 0o755)
        # The build may be rebuilt while we run: run copies.
        try:
            self._copy_binaries(bin_dir)
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise
        self.procs = []
        self.provider = None
        self.counter = 0

    def _copy_binaries(self, bin_dir):
        self.bin = os.path.join(self.base, "bin")
        os.makedirs(self.bin)
        for name in ("tokenbrokerd", "tokenbroker-dev-provider", "tokenbroker"):
            source = os.path.join(bin_dir, name)
            if not os.path.exists(source):
                if name != "tokenbroker":
                    raise HarnessError(f"{source} does not exist (build first, or pass --bin-dir)")
                continue
            copy_stable_binary(source, os.path.join(self.bin, name))
        os.chmod(self.bin, 0o755)
        self.daemon_path = os.path.join(self.bin, "tokenbrokerd")
        self.cli_path = os.path.join(self.bin, "tokenbroker")
        # Helper programs other uids run: copies in a directory they can read.
        self.helpers = os.path.join(self.base, "helpers")
        shutil.copytree(HERE, self.helpers, ignore=shutil.ignore_patterns("__pycache__"))
        # The thread freezer is the integration tests' own (one copy of the ptrace dance).
        shutil.copy(os.path.join(HERE, "..", "..", "Tests", "IntegrationTests", "Fixtures", "python", "freeze_thread.py"),
                    os.path.join(self.helpers, "freeze.py"))
        for root, dirs, files in os.walk(self.helpers):
            os.chmod(root, 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o755)

    def helper(self, name):
        return os.path.join(self.helpers, name)

    def scenario_dir(self, name):
        self.counter += 1
        d = os.path.join(self.base, f"s{self.counter}")
        os.makedirs(d)
        os.chmod(d, 0o755)
        return d

    def start(self, name, argv, workdir, env=None, pass_fds=()):
        p = Proc(name, argv, workdir, env=env, pass_fds=pass_fds)
        self.procs.append(p)
        return p

    def track(self, proc):
        self.procs.append(proc)
        return proc

    def abort(self):
        """From another thread: kills every child of the scenario by PID, so whatever waits on them returns."""
        for p in list(self.procs):
            p.signal(signal.SIGKILL)

    def stop_all(self):
        for p in reversed(self.procs):
            try:
                p.stop(timeout=3)
            except Exception as error:  # noqa: BLE001 - keep stopping the others
                log(f"stopping {p.name}: {error}")
        self.procs.clear()

    def cleanup(self):
        self.stop_all()
        if self.provider:
            self.provider.stop()
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def ensure_provider(self):
        if self.provider is None or not self.provider.proc.alive():
            self.provider = Provider(self)
        return self.provider


def copy_stable_binary(source, target, wait=180):
    """Copies a binary that a build may be rewriting: waits until it stopped changing and the
    copy runs (`--help` exits 0), retrying for at most `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        before = os.stat(source)
        time.sleep(1.0)
        after = os.stat(source)
        if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns):
            shutil.copy2(source, target)
            if os.path.getsize(target) == after.st_size and run([target, "--help"], timeout=30)[0] == 0:
                return
        if time.monotonic() > deadline:
            raise HarnessError(f"{source} kept changing or would not run for {wait} s (a build in progress?)")
        log(f"{source} is being rewritten; waiting")
        time.sleep(3)


class Provider:
    """`tokenbroker-dev-provider`: the issuer and the Entra emulator, with its controls."""

    def __init__(self, run_):
        self.dir = os.path.join(run_.base, "provider")
        os.makedirs(self.dir, exist_ok=True)
        self.proc = Proc("provider", [os.path.join(run_.bin, "tokenbroker-dev-provider"), "--state-dir", os.path.join(self.dir, "state"),
                                      "--log-level", "info"], self.dir)
        file = os.path.join(self.dir, "state", "provider.json")
        wait_until("provider.json", lambda: os.path.exists(file) and os.path.getsize(file) > 0, timeout=60, proc=self.proc)
        time.sleep(0.1)
        with open(file) as f:
            self.endpoints = json.load(f)
        self.tls = ssl.create_default_context(cafile=self.endpoints["caFile"])

    def stop(self):
        self.proc.stop()

    def https(self, method, url, body=None, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=self.tls, timeout=timeout) as response:
            text = response.read().decode()
            return json.loads(text) if text.strip() else None

    def control(self, method, path, body=None):
        return self.https(method, self.endpoints["authorityHost"] + path, body)

    def stats(self):
        return self.control("GET", "/_dev/stats")

    def token_requests(self):
        return self.stats()["tokenRequests"]

    def set_fault(self, status, count, retry_after=None, body=None):
        plan = {"status": status, "count": count}
        if retry_after is not None:
            plan["retryAfterSeconds"] = retry_after
        if body is not None:
            plan["body"] = body
        self.control("POST", "/_dev/faults", plan)

    def clear_fault(self):
        try:
            self.control("DELETE", "/_dev/faults")
        except Exception:  # noqa: BLE001 - best effort
            pass

    def set_latency(self, ms):
        self.control("POST", "/_dev/latency", {"milliseconds": ms})

    def mint(self, **claims):
        return self.https("POST", self.endpoints["issuerURL"] + "/_dev/mint", claims)["token"]

    def entra_exchange(self, client_id=None):
        e = self.endpoints
        return (f'{{ entra: {{ tenantId: "{e["tenantId"]}", clientId: "{client_id or e["clientId"]}", '
                f'authorityHost: "{e["authorityHost"]}" }} }}')


def identity(name, source_file=None, allow=None, exchange=None, source=None, prefetch=()):
    """A dict describing one identity of a generated configuration."""
    return {"name": name, "file": source_file, "allow": allow, "exchange": exchange, "source": source, "prefetch": list(prefetch)}


def config_yaml(socket_path, provider, identities, log_level="debug", extra="", ca_file=None, insecure_loopback=False):
    ca = ca_file or provider.endpoints["caFile"]
    yaml = (f'socket: {{ path: {socket_path}, mode: "0666" }}\n'
            f"upstream: {{ caFile: {ca}{', allowInsecureLoopback: true' if insecure_loopback else ''} }}\n"
            f"log: {{ level: {log_level} }}\n")
    if extra:
        yaml += extra.rstrip("\n") + "\n"
    yaml += "identities:\n"
    for i in identities:
        yaml += f"  - name: {i['name']}\n"
        yaml += f"    source: {i['source'] or '{ file: ' + (i['file'] or provider.endpoints['tokenFile']) + ' }'}\n"
        yaml += f"    exchange: {i['exchange'] or provider.entra_exchange()}\n"
        if i["allow"]:
            yaml += f"    allow: {i['allow']}\n"
        if i["prefetch"]:
            yaml += "    prefetch: [ " + ", ".join(f'"{s}"' for s in i["prefetch"]) + " ]\n"
    return yaml


def standard_identities(provider):
    """`default` (root only), `innocent` (uid INNOCENT), `victim` (uid VICTIM)."""
    tf = provider.endpoints["tokenFile"]
    return [identity("default", tf), identity("innocent", tf, allow=f"[ {{ uid: {INNOCENT} }} ]"),
            identity("victim", tf, allow=f"[ {{ uid: {VICTIM} }} ]")]


class Daemon:
    """tokenbrokerd --config DIR/config.yaml, text logs in DIR/broker.log."""

    def __init__(self, run_, directory, yaml, name="broker", env=None, wait_ready=True, socket_path=None, pass_fds=(),
                 argv_prefix=None, timeout=40):
        self.run = run_
        self.dir = directory
        self.sock = socket_path or os.path.join(directory, "broker.sock")
        self.config = os.path.join(directory, "config.yaml")
        if yaml is not None:
            write_atomic(self.config, yaml)
        argv = [run_.daemon_path, "--config", self.config, "--log-format", "text"]
        if argv_prefix:
            argv = argv_prefix + argv
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_SOCKET", "WATCHDOG_", "LISTEN_", "AZURE_"))}
        if env:
            base_env.update(env)
        self.proc = run_.start(name, argv, directory, env=base_env, pass_fds=pass_fds)
        if wait_ready:
            self.wait_ready(timeout)

    def wait_ready(self, timeout=40):
        wait_until("the broker to be ready", lambda: os.path.exists(self.sock) and re.search(r"\bready\b", self.proc.log_text()),
                   timeout=timeout, proc=self.proc)
        try:
            os.chmod(self.sock, 0o666)  # other uids connect; the allow rules decide
        except OSError:
            pass

    def alive(self):
        return self.proc.alive()

    def crashed(self):
        """True when the daemon died on its own (any exit we did not ask for)."""
        return not self.proc.alive()

    def request(self, req, timeout=10.0):
        return ndjson(self.sock, req, timeout)

    def ping(self, timeout=3.0):
        reply, took, err = self.request({"op": "ping", "id": 0}, timeout)
        return bool(reply and reply.get("ok")), took

    def compat_port(self):
        reply, _, err = self.request({"op": "status"})
        host = (((reply or {}).get("status") or {}).get("compat") or {}).get("imdsAuthorityHost")
        if not host:
            raise HarnessError(f"status names no compat listener: {reply or err}")
        return int(host.rsplit(":", 1)[1])

    def identity_header(self):
        reply, _, _ = self.request({"op": "status"})
        return (((reply or {}).get("status") or {}).get("compat") or {}).get("identityHeader")

    def stop(self, timeout=10):
        return self.proc.stop(timeout)


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def fatal_in_log(text):
    """Lines that say the daemon crashed (Swift runtime traps, fatal errors)."""
    return [line for line in text.splitlines() if re.search(r"Fatal error|fatalError|Segmentation fault|Illegal instruction|"
                                                            r"Current stack trace|💣|Assertion failed", line)]


def make_fifo(path):
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    os.mkfifo(path, 0o600)
    return path


def unblock_fifo(path):
    """Opens a FIFO for writing without blocking and closes it: a reader stuck in open() or read() returns."""
    try:
        if stat.S_ISFIFO(os.lstat(path).st_mode):
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
    except OSError:
        pass


def cgroup_v2_mount():
    for base in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(os.path.join(base, "cgroup.controllers")) and os.access(os.path.join(base, "cgroup.procs"), os.W_OK):
            return base
    return None
