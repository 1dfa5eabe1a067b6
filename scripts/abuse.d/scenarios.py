"""The scenarios of scripts/abuse, one function each. Every function gets the Run and a
Result to fill in, starts what it needs through the harness (which stops it afterwards),
and never waits without a deadline. docs/abuse.md says what each one does and what
counts as a wrong grant, a crash or a lost request.
"""
import concurrent.futures
import json
import os
import re
import secrets as pysecrets
import select
import shutil
import signal
import socket
import subprocess
import threading
import time

import harness as h
from harness import ATTACKER, INNOCENT, VICTIM, SCOPE, HarnessError, Skip

OTHER_PYTHON = "/usr/bin/python3"  # other uids cannot reach a venv under /root
P99_LIMIT_MS = 1000.0              # the loopback flood fails when the innocent p99 exceeds this and 3x its baseline


class Result:
    def __init__(self, name):
        self.name = name
        self.attempts = 0
        self.wrong = 0
        self.crashes = 0
        self.lost = 0
        self.worst_ms = None
        self.notes = []
        self.failures = []
        self.skipped = None
        self.seconds = 0.0

    def latency(self, ms):
        if ms is not None:
            self.worst_ms = ms if self.worst_ms is None else max(self.worst_ms, ms)

    def note(self, text):
        self.notes.append(text)

    def fail(self, text):
        self.failures.append(text)

    @property
    def failed(self):
        return self.skipped is None and bool(self.wrong or self.crashes or self.lost or self.failures)

    def as_dict(self):
        return {"scenario": self.name, "attempts": self.attempts, "wrongGrants": self.wrong, "crashes": self.crashes,
                "lostRequests": self.lost, "worstInnocentLatencyMs": self.worst_ms, "notes": self.notes,
                "failures": self.failures, "skipped": self.skipped, "failed": self.failed, "seconds": round(self.seconds, 1)}


# ------------------------------------------------------------------ shared steps
def check_config(run, directory, yaml):
    """Skips the scenario when the binary does not know a configuration key it uses."""
    path = os.path.join(directory, "check.yaml")
    with open(path, "w") as f:
        f.write(yaml)
    status, out, err = h.run([run.daemon_path, "check-config", "--config", path], timeout=30)
    if status != 0:
        m = re.search(r"(\S+) \(line \d+\): (unknown field|must have exactly one of)", out + err)
        if m:
            key = re.sub(r"\[\d+\]", "", m.group(1))  # identities.allow.all, not identities[3].allow[0].all
            raise Skip(f"needs config key {key}")
        raise HarnessError(f"check-config rejected the scenario's configuration: {(out + err).strip()[-400:]}")


def start_daemon(run, directory, identities=None, extra="", log_level="debug", env=None, ca_file=None, insecure_loopback=False,
                 name="broker"):
    provider = run.ensure_provider()
    ids = identities if identities is not None else h.standard_identities(provider)
    yaml = h.config_yaml(os.path.join(directory, "broker.sock"), provider, ids, log_level=log_level, extra=extra,
                         ca_file=ca_file, insecure_loopback=insecure_loopback)
    check_config(run, directory, yaml)
    return h.Daemon(run, directory, yaml, env=env, name=name)


def compat_yaml(directory, tcp="127.0.0.1:0"):
    return f'compat: {{ tcp: "{tcp}", identityHeaderFile: {directory}/identity-header }}'


def account_daemon(res, daemon):
    """One crash when the daemon died while it should be running, or its log shows a trap."""
    died = not daemon.alive()
    fatal = h.fatal_in_log(daemon.proc.log_text())
    if died or fatal:
        res.crashes += 1
    if died:
        res.note(f"daemon exited with status {daemon.proc.proc.returncode}")
    if fatal:
        res.note(f"fatal in log: {fatal[0][:120]}")


def start_probe(run, directory, daemon, duration, compat_port=None, interval=20, count=0, name="probe", uid=INNOCENT,
                identity="innocent", compat_host="127.0.0.1", timeout=5):
    argv = [OTHER_PYTHON, run.helper("probe.py"), "--unix", daemon.sock, "--identity", identity, "--duration", str(duration),
            "--interval", str(interval), "--timeout", str(timeout)]
    if compat_port:
        argv += ["--compat-port", str(compat_port), "--compat-host", compat_host]
    if count:
        argv += ["--count", str(count)]
    return run.track(h.spawn_as_uid(uid, name, argv, directory))


def finish_probe(proc, timeout):
    """The probe's JSON (waits at most `timeout`)."""
    if proc.wait(timeout) is None:
        proc.stop(1)
        raise HarnessError("the innocent probe did not finish")
    for line in reversed(proc.log_text().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise HarnessError(f"the innocent probe printed no result: {proc.log_text()[-300:]}")


def account_probe(res, results, label=""):
    """Adds an innocent probe's figures: failures are lost requests."""
    parts = []
    for channel, r in results.items():
        res.attempts += r["n"]
        res.lost += r["failed"]
        if r["lat"]:
            res.latency(max(r["lat"]))
            parts.append(f"{label}{channel} p99 {h.percentile(r['lat'], 99):.1f} ms, max {max(r['lat']):.1f} ms ({r['n']} req)")
        if r["failed"]:
            parts.append(f"{label}{channel}: {r['failed']} failed, e.g. {r['errors'][:1]}")
    if parts:
        res.note("innocent " + "; ".join(parts))
    return results


def reply_granted(reply):
    return bool(reply and reply.get("ok") and (reply.get("token") or reply.get("accessKeyId") or reply.get("credentials")))


def curl_url(path):
    return f"http://localhost{path}"


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic, text)
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.stopped:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                for part in data.decode(errors="replace").split("\n"):
                    if part:
                        self.messages.append((time.monotonic(), part))

    def count(self, text, after=0.0):
        with self.lock:
            return sum(1 for t, m in self.messages if m == text and t >= after)

    def wait(self, text, after, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(text, after):
                return True
            time.sleep(0.01)
        return False

    def close(self):
        self.stopped = True
        self.sock.close()
        self.thread.join(1)
        try:
            os.unlink(self.path)
        except OSError:
            pass


# ------------------------------------------------------------------ 1. watchdog
def watchdog_freeze(run, res):
    """A frozen serving thread (either socket loop, or the compat listener's) must stop WATCHDOG=1."""
    d = run.scenario_dir("watchdog")
    notify = NotifySocket(os.path.join(d, "notify.sock"))
    try:
        daemon = start_daemon(run, d, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"}, log_level="info",
                              extra="limits: { eventLoopThreads: 2 }\n" + compat_yaml(d))
        if not _quiet(lambda: notify.count("WATCHDOG=1") >= 3, 10):
            res.fail("no WATCHDOG=1 at WATCHDOG_USEC=400000 before the freeze")
            return
        port = daemon.compat_port()
        threads = [(name, thread_named(daemon.proc.pid, name)) for name in ("tokenbroker-0", "tokenbroker-1")]
        if threads[0][1] is None:
            raise Skip("needs a serving thread named tokenbroker-0")
        nio = [(n, t) for n, t in threads_matching(daemon.proc.pid, r"^NIO-ELT-")]
        if len(nio) == 1:  # the compat listener's loop (shared with the token-service client)
            threads.append(nio[0])
        else:
            res.note(f"{len(nio)} NIO threads: the compat loop is not frozen")
        for _ in range(1 if run.quick else 2):
            for name, tid in threads:
                if tid is None:
                    res.note(f"no thread {name}")
                    continue
                freeze_round(run, res, daemon, notify, name, tid, compat_port=port if name.startswith("NIO") else None)
        res.note(f"{notify.count('WATCHDOG=1')} pings in all; 'withholding' logged: {'withholding WATCHDOG=1' in daemon.proc.log_text()}")
        account_daemon(res, daemon)
    finally:
        notify.close()


def freeze_round(run, res, daemon, notify, name, tid, compat_port=None):
    """Freezes one thread for 2 s with a request waiting on it; pings must stop, then resume."""
    res.attempts += 1
    freezer = subprocess.Popen([run.python, run.helper("freeze.py"), str(tid)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    pending = {}

    def ask():
        if compat_port:
            status, body, took, err = h.http_tcp("127.0.0.1", compat_port, h.imds_path(), {"Metadata": "true"}, timeout=15)
            pending["r"] = ({"ok": status == 200} if status else None, took, err)
        else:
            pending["r"] = daemon.request({"op": "token", "scope": SCOPE, "id": 1}, 15)
    try:
        ready, _, _ = select.select([freezer.stdout], [], [], 10)
        if not ready or b"frozen" not in freezer.stdout.readline():
            why = freezer.stderr.read1(400).decode(errors="replace") if ready else "timeout"
            if "Operation not permitted" in why:
                raise Skip("needs ptrace of the daemon (kernel.yama.ptrace_scope)")
            raise HarnessError(f"could not freeze thread {name} ({tid}): {why}")
        waiter = threading.Thread(target=ask)  # may land on the frozen loop: answered after the thaw
        waiter.start()
        time.sleep(0.5)  # a ping already under way may still land
        start = time.monotonic()
        time.sleep(1.5)
        during = notify.count("WATCHDOG=1", after=start)
    finally:
        freezer.stdin.close()
        try:
            freezer.wait(5)
        except subprocess.TimeoutExpired:
            freezer.kill()
            freezer.wait(5)
    released = time.monotonic()
    if during:
        res.fail(f"{during} WATCHDOG=1 in 1.5 s while {name} was frozen")
    if not notify.wait("WATCHDOG=1", after=released, timeout=5):
        res.fail(f"WATCHDOG=1 did not resume within 5 s of thawing {name}")
    waiter.join(20)
    reply, took, err = pending.get("r", (None, None, "no answer"))
    if not (reply and reply.get("ok")):
        res.lost += 1
        res.note(f"{name}: the request sent while frozen got {err or reply}")
    else:
        res.note(f"{name}: {during} pings while frozen, the waiting request answered after {took * 1000:.0f} ms")
    ok, took = daemon.ping()
    res.latency(took * 1000)
    if not ok:
        res.lost += 1


def threads_matching(pid, pattern):
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            if re.search(pattern, name):
                found.append((name, int(tid)))
    except OSError:
        pass
    return found


def _quiet(predicate, timeout):
    """Whether `predicate` became true within `timeout` seconds (never raises)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def thread_named(pid, name):
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() == name:
                    return int(tid)
    except OSError:
        pass
    return None


# ------------------------------------------------------------------ 2. loopback flood
def loopback_flood(run, res):
    """An unprivileged uid floods the compat port; another uid's requests must stay fast."""
    d = run.scenario_dir("flood")
    daemon = start_daemon(run, d, extra=compat_yaml(d), log_level="info")
    port = daemon.compat_port()
    finish_probe(start_probe(run, d, daemon, 10, compat_port=port, count=2, interval=5, name="warm-up"), 30)  # the first exchange
    baseline = finish_probe(start_probe(run, d, daemon, 10, compat_port=port, count=40, interval=5, name="baseline"), 30)
    duration = 6 if run.quick else 20
    flood = run.track(h.spawn_as_uid(ATTACKER, "flood", [OTHER_PYTHON, run.helper("flood.py"), str(port), "--duration",
                                                         str(duration), "--threads", "3", "--hold", "300"], d))
    time.sleep(0.5)  # the flood is under way
    probe = start_probe(run, d, daemon, duration - 1, compat_port=port, interval=20)
    results = finish_probe(probe, duration + 30)
    flood_result = finish_probe(flood, duration + 30)
    account_probe(res, results)
    res.attempts += flood_result["connections"] + flood_result["asked"]
    res.wrong += flood_result["grants"]
    before = ", ".join(f"{c} {h.percentile(r['lat'], 99):.1f} ms" for c, r in baseline.items())
    res.note(f"baseline (no flood) p99 {before}; attacker: {flood_result['connections']} connections opened/closed, "
             f"{flood_result['held']} held half-sent, {flood_result['asked']} token asks answered {flood_result['answers']}")
    slow = {c: sum(1 for x in r["lat"] if x >= 1000) for c, r in results.items()}
    if any(slow.values()):
        res.note("innocent requests over 1 s (a dropped SYN is sent again after 1 s): "
                 + ", ".join(f"{c} {n} of {len(results[c]['lat'])}" for c, n in slow.items()))
    for channel, r in results.items():
        p99 = h.percentile(r["lat"], 99)
        limit = max(P99_LIMIT_MS, 3 * h.percentile(baseline.get(channel, {}).get("lat", []), 99))
        if p99 > limit:
            res.fail(f"innocent {channel} p99 {p99:.0f} ms under the flood (> {limit:.0f} ms)")
    account_daemon(res, daemon)


# ------------------------------------------------------------------ 3. exe rules
def allowed_copy(directory, source, name):
    bindir = os.path.join(directory, "bin")
    os.makedirs(bindir, exist_ok=True)
    os.chmod(bindir, 0o755)
    path = os.path.join(bindir, name)
    shutil.copy2(os.path.realpath(source), path)
    os.chmod(path, 0o755)
    return path


def exe_userns(run, res):
    """A caller in its own user+mount namespace bind-mounts curl over the allowed path; root in a user namespace asks for root's identity."""
    d = run.scenario_dir("userns")
    app = allowed_copy(d, "/usr/bin/curl", "app")
    provider = run.ensure_provider()
    tf = provider.endpoints["tokenFile"]
    ids = h.standard_identities(provider) + [h.identity("by-exe", tf, allow=f"[ {{ exe: {app} }} ]")]
    # All-of rules (a uid AND an executable), where the binary knows them.
    narrow = h.identity("narrow", tf, allow=f"[ {{ all: [ {{ uid: {ATTACKER} }}, {{ exe: {app} }} ] }} ]")
    try:
        check_config(run, d, h.config_yaml(os.path.join(d, "broker.sock"), provider, ids + [narrow]))
        ids.append(narrow)
    except Skip as skip:
        res.note(f"all-of rules not tried ({skip})")
        narrow = None
    daemon = start_daemon(run, d, ids, extra=compat_yaml(d), log_level="info")
    url = curl_url(f"/v1/token?scope={SCOPE}&identity=by-exe")
    status, out, err = h.as_uid(ATTACKER, [app, "-s", "--max-time", "10", "--unix-socket", daemon.sock, url])
    control = _json(out)
    res.attempts += 1
    if not reply_granted(control):
        res.lost += 1
        res.fail(f"the allowed binary itself was refused: {out[:160] or err[:160]}")
    attacks = {
        "file bind": r'mount --bind /usr/bin/curl "$0" && exec "$0" -s --max-time 10 --unix-socket "$1" "$2"',
        "dir bind": r'x=$(mktemp -d) && cp /usr/bin/curl "$x/app" && mount --bind "$x" "$(dirname "$0")" && '
                    r'exec "$0" -s --max-time 10 --unix-socket "$1" "$2"',
        "proc remount": r'mount --bind /usr/bin/curl "$0" && exec unshare -p -f --mount-proc "$0" -s --max-time 10 --unix-socket "$1" "$2"',
    }
    rounds = 2 if run.quick else 6
    outcomes = {}
    for label, script in attacks.items():
        for _ in range(rounds):
            status, out, err = h.as_uid(ATTACKER, ["/usr/bin/unshare", "-Urm", "/bin/sh", "-c", script, app, daemon.sock, url], timeout=30)
            reply = _json(out)
            if reply is None:
                if "unshare" in err and ("Operation not permitted" in err or "Invalid argument" in err):
                    if label == "file bind":
                        raise Skip("needs unprivileged user namespaces (unshare -Urm failed)")
                outcomes.setdefault(label, []).append("no answer: " + (err.strip().splitlines() or ["?"])[-1][:80])
                continue
            res.attempts += 1
            if reply_granted(reply):
                res.wrong += 1
                outcomes.setdefault(label, []).append("GRANTED")
            else:
                outcomes.setdefault(label, []).append((reply.get("error") or {}).get("code", "?"))
    if narrow:
        narrow_url = curl_url(f"/v1/token?scope={SCOPE}&identity=narrow")
        checks = [("all-of: uid and exe", ATTACKER, [app, "-s", "--max-time", "10", "--unix-socket", daemon.sock, narrow_url], True),
                  ("all-of: uid, other exe", ATTACKER, ["/usr/bin/curl", "-s", "--max-time", "10", "--unix-socket", daemon.sock, narrow_url], False),
                  ("all-of: exe, other uid", VICTIM, [app, "-s", "--max-time", "10", "--unix-socket", daemon.sock, narrow_url], False),
                  ("all-of: uid, bind-mounted exe", ATTACKER, ["/usr/bin/unshare", "-Urm", "/bin/sh", "-c", attacks["file bind"], app,
                                                              daemon.sock, narrow_url], False)]
        for label, uid, argv, should in checks:
            status, out, err = h.as_uid(uid, argv, timeout=30)
            reply = _json(out)
            res.attempts += 1
            granted = reply_granted(reply)
            if granted and not should:
                res.wrong += 1
            if should and not granted:
                res.lost += 1
            outcomes.setdefault(label, []).append("GRANTED" if granted and not should else "granted" if granted
                                                  else ((reply or {}).get("error") or {}).get("code", "no answer"))
    # Root inside its own user namespace is still uid ATTACKER to the kernel: identity
    # `default` (root only) must be refused on the socket and on the IMDS endpoint.
    port = daemon.compat_port()
    client_id = provider.endpoints["clientId"]
    ns_root = {
        "ns-root socket": [app, "-s", "--max-time", "10", "--unix-socket", daemon.sock, curl_url(f"/v1/token?scope={SCOPE}&identity=default")],
        "ns-root imds": [app, "-s", "--max-time", "10", "-H", "Metadata: true", f"http://127.0.0.1:{port}{h.imds_path(f'&client_id={client_id}')}"],
    }
    for label, argv in ns_root.items():
        for _ in range(rounds):
            status, out, err = h.as_uid(ATTACKER, ["/usr/bin/unshare", "-Ur"] + argv, timeout=30)
            res.attempts += 1
            granted = "access_token" in out or reply_granted(_json(out))
            if granted:
                res.wrong += 1
            code = re.search(r'"code":"(\w+)"|"error":"(\w+)"', out)
            outcomes.setdefault(label, []).append("GRANTED" if granted else (code.group(1) or code.group(2) if code else "no answer"))
    for label, got in outcomes.items():
        res.note(f"{label}: " + ", ".join(f"{x} x{got.count(x)}" for x in sorted(set(got))))
    account_daemon(res, daemon)


def _json(text):
    for line in reversed((text or "").strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def exe_connect_exec(run, res):
    """Connect as python, then exec the allowed binary; a forked child keeps the socket and asks."""
    d = run.scenario_dir("connexec")
    sleeper = allowed_copy(d, "/usr/bin/sleep", "sleeper")
    provider = run.ensure_provider()
    ids = h.standard_identities(provider) + [h.identity("by-sleeper", provider.endpoints["tokenFile"], allow=f"[ {{ exe: {sleeper} }} ]")]
    daemon = start_daemon(run, d, ids, log_level="info")
    rounds = 4 if run.quick else 15
    tally = {}
    for delay in (0, 100):
        for _ in range(rounds):
            status, out, err = h.as_uid(ATTACKER, [OTHER_PYTHON, run.helper("connect_exec.py"), daemon.sock, "by-sleeper", sleeper, str(delay)], timeout=20)
            reply = _json(out)
            res.attempts += 1
            outcome = "granted" if reply_granted(reply) else ((reply or {}).get("error") or {}).get("code", f"no answer {err.strip()[-60:]}")
            tally.setdefault(delay, []).append(outcome)
    late = tally.get(100, []).count("granted")
    res.wrong += late  # accepted as python, asked after the exec: must be refused
    for delay, got in tally.items():
        what = "exec at once (may beat accept)" if delay == 0 else "exec 100 ms after connect"
        res.note(f"{what}: " + ", ".join(f"{x} x{got.count(x)}" for x in sorted(set(got))))
    if tally.get(0, []).count("granted"):
        res.note("grants with exec at once: accept read the exec'd binary (docs/security.md: exe is read at accept)")
    account_daemon(res, daemon)


# ------------------------------------------------------------------ 4. restart in TIME-WAIT
def time_wait_entries(port):
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "06":
                        count += 1
        except (OSError, StopIteration):
            pass
    return count


def compat_timewait_restart(run, res):
    """Restarting on the same compat port while its connections sit in TIME-WAIT must work."""
    d = run.scenario_dir("timewait")
    daemon = start_daemon(run, d, extra=compat_yaml(d), log_level="info")
    port = daemon.compat_port()
    restarts = 2 if run.quick else 5
    for i in range(restarts):
        for _ in range(20):  # the broker closes these (Connection: close): its side waits in TIME-WAIT
            status, body, took, err = h.http_tcp("127.0.0.1", port, h.imds_path(), {"Metadata": "true"})
        held = []
        for _ in range(5):  # and a few idle keep-alive connections at SIGTERM
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                pass
        waiting = time_wait_entries(port)
        status = daemon.stop(timeout=15)
        for s in held:
            s.close()
        if status != 0:
            res.note(f"stop {i + 1}: exit status {status}")
        res.attempts += 1
        try:
            daemon = start_daemon(run, d, extra=compat_yaml(d, f"127.0.0.1:{port}"), log_level="info", name=f"broker{i + 2}")
        except HarnessError as error:
            res.crashes += 1
            res.fail(f"restart {i + 1} with {waiting} TIME-WAIT entries failed: {str(error)[-200:]}")
            return
        status, body, took, err = h.http_tcp("127.0.0.1", port, h.imds_path(), {"Metadata": "true"})
        res.latency(took * 1000)
        if status != 200:
            res.lost += 1
            res.note(f"after restart {i + 1}: {status} {err or body[:120]}")
        res.note(f"restart {i + 1}: {waiting} TIME-WAIT on :{port}, served again")
    account_daemon(res, daemon)


# ------------------------------------------------------------------ 5. hostile token service
def hostile_upstream(run, res):
    """Token services that echo secrets, send 200 KB ids and CR/LF: nothing secret may reach callers or logs."""
    import hostile
    d = run.scenario_dir("hostile")
    service = hostile.Hostile(d)
    try:
        provider = run.ensure_provider()
        ca = os.path.join(d, "ca.pem")
        with open(ca, "w") as out:
            for source in [provider.endpoints["caFile"]] + ([service.cert] if service.tls_ok else []):
                with open(source) as f:
                    out.write(f.read().rstrip("\n") + "\n")
        client_secret = pysecrets.token_hex(24)
        with open(os.path.join(d, "client-secret"), "w") as f:
            f.write(client_secret + "\n")
        tf = provider.endpoints["tokenFile"]
        entra_client = "22222222-2222-2222-2222-222222222222"
        ids = [h.identity("default", tf), h.identity("innocent", tf, allow=f"[ {{ uid: {INNOCENT} }} ]")]
        if service.tls_ok:
            ids.append(h.identity("entra-hostile", tf, exchange=(f'{{ entra: {{ tenantId: "33333333-3333-3333-3333-333333333333", '
                                                                 f'clientId: "{entra_client}", authorityHost: "{service.https_base}" }} }}')))
        else:
            res.note("openssl unavailable: the Entra (https) variant is skipped")
        ids.append(h.identity("rfc-hostile", tf, exchange=(f'{{ rfc8693: {{ tokenEndpoint: "{service.http_base}/rfc/token", '
                                                           f'audience: "api://hostile", clientId: "abuse-client", '
                                                           f'clientSecretFile: {d}/client-secret }} }}')))
        for i in range(hostile.AWS_VARIANTS):
            ids.append(h.identity(f"aws-hostile-{i}", tf, exchange=(f'{{ awsSts: {{ roleArn: "arn:aws:iam::123456789012:role/hostile-{i}", '
                                                                     f'endpoint: "{service.http_base}" }} }}')))
        daemon = start_daemon(run, d, ids, extra=compat_yaml(d), log_level="trace", ca_file=ca, insecure_loopback=True)
        port = daemon.compat_port()
        header = daemon.identity_header()
        log_start = 0

        jobs = []
        for v in range(hostile.ENTRA_VARIANTS):
            for ident, tag in ((("entra-hostile", "e") if service.tls_ok else (None, None)), ("rfc-hostile", "r")):
                if not ident:
                    continue
                name = hostile.entra_variant(v, "")[0]
                jobs.append(("ndjson", f"{ident.split('-')[0]} {name}",
                             {"op": "token", "identity": ident, "scope": f"api://hostile-{v}-{tag}n/.default", "id": v}))
                jobs.append(("http", f"{ident.split('-')[0]} {name}", f"/v1/token?identity={ident}&scope=api://hostile-{v}-{tag}h/.default"))
            if service.tls_ok:
                jobs.append(("imds", f"entra {hostile.entra_variant(v, '')[0]}",
                             h.imds_path().replace("https://storage.azure.com", f"api://hostile-{v}-ei") + f"&client_id={entra_client}"))
        for i in range(hostile.AWS_VARIANTS):
            name = f"aws {hostile.aws_variant(i, '')[0]}"
            jobs.append(("ndjson", name, {"op": "token", "identity": f"aws-hostile-{i}", "id": 100 + i}))
            jobs.append(("http", name, f"/v1/token?identity=aws-hostile-{i}"))
            jobs.append(("aws", name, f"/aws/credentials/aws-hostile-{i}"))

        def one(job):
            kind, label, what = job
            start = time.monotonic()
            if kind == "ndjson":
                data, how = h.raw_exchange(daemon.sock, (json.dumps(what) + "\n").encode(), timeout=60, half_close=True)
            elif kind == "http":
                data, how = h.raw_exchange(daemon.sock, f"GET {what} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), timeout=60)
            elif kind == "imds":
                data, how = h.raw_exchange(("127.0.0.1", port), f"GET {what} HTTP/1.1\r\nHost: 127.0.0.1\r\nMetadata: true\r\nConnection: close\r\n\r\n".encode(), timeout=60)
            else:
                data, how = h.raw_exchange(("127.0.0.1", port), f"GET {what} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {header}\r\nConnection: close\r\n\r\n".encode(), timeout=60)
            return kind, label, data, how, time.monotonic() - start

        probe = start_probe(run, d, daemon, 2 if run.quick else 5, interval=20)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, jobs))
        account_probe(res, finish_probe(probe, 30))
        time.sleep(0.5)  # let the last log lines land
        secrets = set(service.secrets) | {client_secret}
        with open(tf) as f:
            secrets.add(f.read().strip())
        leaking, injected_heads, unanswered, biggest = [], 0, 0, 0
        for kind, label, data, how, took in answers:
            res.attempts += 1
            text = data.decode(errors="replace")
            biggest = max(biggest, len(data))
            if not data:
                unanswered += 1
            if hostile.leaks(text, secrets):
                leaking.append(f"{label} via {kind}")
            head = text.split("\r\n\r\n", 1)[0] if text.startswith("HTTP/") else ""
            if re.search(r"(?im)^X-Injected:", head) or hostile.INJECT in head:
                injected_heads += 1
            if (reply_granted(_json(text)) if kind == "ndjson" else text.startswith("HTTP/1.1 200")):
                res.wrong += 1
                leaking.append(f"{label} via {kind}: a token from a hostile service error")
        log = daemon.proc.log_text(log_start)
        log_leaks = hostile.leaks(log, secrets)
        if log_leaks:
            res.note("secrets in the log under: " + ", ".join(sorted(hostile.leak_fields(log, secrets))))
        injected = hostile.injected_lines(log)
        res.wrong += len(leaking) + injected_heads + log_leaks + len(injected)
        longest = max((len(line) for line in log.splitlines()), default=0)
        res.note(f"{service.requests} upstream exchanges over {len(service.by_variant)} variants; "
                 f"{len(leaking)} answers leaked a secret, {log_leaks} secrets in the log, {len(injected)} injected log lines, "
                 f"{injected_heads} injected response headers; longest log line {longest} B, biggest answer {biggest} B")
        if leaking:
            res.note("leaking answers: " + ", ".join(leaking[:8]) + (" …" if len(leaking) > 8 else ""))
        if unanswered:
            res.note(f"{unanswered} requests got no answer")
            res.lost += unanswered
        expected_variants = (hostile.ENTRA_VARIANTS if service.tls_ok else 0) + hostile.ENTRA_VARIANTS + hostile.AWS_VARIANTS
        if not service.secrets:
            res.fail("the hostile token service was never sent a secret: nothing was tested")
        elif len(service.by_variant) < expected_variants:
            res.note(f"only {len(service.by_variant)} of {expected_variants} variants reached the token service")
        if longest > 64 * 1024:
            res.fail(f"a log line of {longest} bytes (a 200 KB trace id was logged whole)")
        account_daemon(res, daemon)
    finally:
        service.close()


# ------------------------------------------------------------------ 6. 429 and invented scopes
def retry_after_429(run, res):
    """A 429 with Retry-After: new scopes of that identity must not each go to the token service."""
    d = run.scenario_dir("retry")
    provider = run.ensure_provider()
    daemon = start_daemon(run, d, log_level="info")
    reply, took, err = daemon.request({"op": "token", "scope": SCOPE, "id": 1}, 30)
    if not reply_granted(reply):
        raise HarnessError(f"warm-up token failed: {reply or err}")
    scopes = 10 if run.quick else 40
    provider.set_fault(429, count=1000, retry_after=30)
    try:
        before = provider.token_requests()
        codes = []
        for i in range(scopes):
            reply, took, err = daemon.request({"op": "token", "scope": f"api://retry-{i}-{pysecrets.token_hex(3)}/.default", "id": i}, 30)
            res.attempts += 1
            codes.append(((reply or {}).get("error") or {}).get("code", "ok" if reply_granted(reply) else err))
        hits = provider.token_requests() - before
        # The cached token of that identity is still served (an innocent caller of it).
        reply, took, err = daemon.request({"op": "token", "scope": SCOPE, "id": 99}, 10)
        res.attempts += 1
        res.latency(took * 1000)
        if not reply_granted(reply):
            res.lost += 1
            res.note(f"cached token not served during Retry-After: {reply or err}")
    finally:
        provider.clear_fault()
    res.note(f"{scopes} new scopes during Retry-After 30 s -> {hits} token-service requests; answers: "
             + ", ".join(f"{c} x{codes.count(c)}" for c in sorted(set(map(str, codes)))))
    if hits > 2:
        res.fail(f"{hits} token-service requests for {scopes} new scopes while Retry-After held")
    account_daemon(res, daemon)


def scope_flood_log(run, res):
    """Invented scopes with an unusable assertion must not write a warning per scope."""
    d = run.scenario_dir("scopeflood")
    provider = run.ensure_provider()
    garbage = os.path.join(d, "garbage-token")
    with open(garbage, "w") as f:
        f.write("not-a-jwt\n")
    ids = h.standard_identities(provider) + [h.identity("broken", garbage)]
    try:
        expired = provider.mint(ttlSeconds=60, issuedAtOffsetSeconds=-7200)
        with open(os.path.join(d, "expired-token"), "w") as f:
            f.write(expired)
        ids.append(h.identity("expired", os.path.join(d, "expired-token")))
    except Exception as error:  # noqa: BLE001
        res.note(f"no expired assertion ({error}); garbage only")
    daemon = start_daemon(run, d, ids, extra="limits: { requestsPerSecondPerUID: 0 }", log_level="info")
    names = [i["name"] for i in ids if i["name"] in ("broken", "expired")]
    total = 2000 if run.quick else 20000
    connections = 4
    duration = 4 if run.quick else 15
    probe = start_probe(run, d, daemon, duration, interval=20)
    before = daemon.proc.log_bytes()

    def flood(k):
        answered = 0
        per = total // connections
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(30)
                s.connect(daemon.sock)
                batch = 200
                for start in range(0, per, batch):
                    lines = "".join(json.dumps({"op": "token", "identity": names[(start + j) % len(names)],
                                                "scope": f"api://invented-{k}-{start + j}/.default"}) + "\n" for j in range(min(batch, per - start)))
                    s.sendall(lines.encode())
                    want = min(batch, per - start)
                    got = b""
                    while got.count(b"\n") < want:
                        chunk = s.recv(1 << 20)
                        if not chunk:
                            return answered
                        got += chunk
                    answered += want
        except OSError:
            pass
        return answered

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        answered = sum(pool.map(flood, range(connections)))
    took = time.monotonic() - started
    account_probe(res, finish_probe(probe, duration + 30))
    time.sleep(0.5)
    text = daemon.proc.log_text(before)
    written = daemon.proc.log_bytes() - before
    warnings = sum(1 for line in text.splitlines() if re.search(r"\bwarning\b", line, re.I))
    res.attempts += total
    res.note(f"{total} invented scopes in {took:.1f} s ({answered} answered): log grew {written} B "
             f"({written / max(total, 1):.1f} B/request), {warnings} warning lines")
    if answered < total:
        res.note(f"{total - answered} flood requests unanswered")
    if warnings > max(20, total // 100):
        res.fail(f"{warnings} warnings for {total} invented scopes")
    account_daemon(res, daemon)


# ------------------------------------------------------------------ 7. IPv4-mapped loopback
def ipv4_mapped(run, res):
    """Callers on ::ffff:127.0.0.1 are attested by uid like 127.0.0.1 callers."""
    d = run.scenario_dir("mapped")
    daemon = start_daemon(run, d, extra=compat_yaml(d), log_level="info")
    port = daemon.compat_port()
    rounds = 3 if run.quick else 10
    tally = {}
    for _ in range(rounds):
        for host in ("127.0.0.1", "[::ffff:127.0.0.1]"):
            for uid, who in ((INNOCENT, "innocent"), (ATTACKER, "attacker")):
                start = time.monotonic()
                status, out, err = h.as_uid(uid, ["/usr/bin/curl", "-s", "-g", "--max-time", "10", "-w", "\n%{http_code}",
                                                  "-H", "Metadata: true", f"http://{host}:{port}{h.imds_path()}"])
                took = (time.monotonic() - start) * 1000
                code = out.strip().splitlines()[-1] if out.strip() else f"curl {status}"
                granted = "access_token" in out and code == "200"
                res.attempts += 1
                tally.setdefault(f"{who} via {host}", []).append(code)
                if who == "innocent":
                    res.latency(took)
                    if not granted:
                        res.lost += 1
                elif granted:
                    res.wrong += 1
    res.note("; ".join(f"{k}: " + ",".join(f"{c} x{v.count(c)}" for c in sorted(set(v))) for k, v in tally.items()))
    account_daemon(res, daemon)


# ------------------------------------------------------------------ 8. broken configuration on SIGHUP
def broken_config_sighup(run, res):
    """Broken files on SIGHUP: the previous configuration keeps serving; SIGTERM still completes."""
    d = run.scenario_dir("reload")
    daemon = start_daemon(run, d, log_level="info")
    good = open(daemon.config).read()
    head = good.split("identities:", 1)[0]
    path = daemon.config
    reply, _, err = daemon.request({"op": "token", "scope": SCOPE, "id": 1}, 30)
    if not reply_granted(reply):
        raise HarnessError(f"warm-up token failed: {reply or err}")

    def write(text):
        def apply():
            _clear(path)
            with open(path, "wb") as f:
                f.write(text if isinstance(text, bytes) else text.encode())
        return apply

    def make_dir():
        _clear(path)
        os.mkdir(path)

    def make_fifo():
        h.make_fifo(path)

    def dev_zero():
        _clear(path)
        os.symlink("/dev/zero", path)

    def missing():
        _clear(path)

    variants = [("empty file", write("")), ("comments only", write("# nothing here\n# at all\n")),
                ("identities: []", write(head + "identities: []\n")), ("identities: null", write(head + "identities:\n")),
                ("invalid YAML", write(head + "identities: [\n  - { name: x\n")), ("binary", write(os.urandom(4096))),
                ("directory", make_dir), ("FIFO", make_fifo), ("symlink to /dev/zero", dev_zero), ("missing file", missing)]
    hung, emptied = [], []
    def callers_served(label):
        """Root (identity default), a ping and the innocent uid, right after a reload."""
        res.attempts += 1
        ok, took = daemon.ping(3)
        reply, took2, err = daemon.request({"op": "token", "scope": SCOPE, "id": 2}, 5)
        probe = start_probe(run, d, daemon, 5, count=1, name="probe-" + re.sub(r"\W", "", label))
        innocent = finish_probe(probe, 20)["unix"]
        res.attempts += innocent["n"]
        res.lost += innocent["failed"]
        if innocent["lat"]:
            res.latency(max(innocent["lat"]))
        res.latency(max(took, took2) * 1000)
        if not ok:
            hung.append(label)
            res.lost += 1
        root_ok = reply_granted(reply)
        if not root_ok:
            res.lost += 1
        if not root_ok or innocent["failed"]:
            code = re.search(r'"code":"(\w+)"', (innocent["errors"] or [""])[0])
            emptied.append(f"{label} (root: {'ok' if root_ok else (reply or {}).get('error', {}).get('code') or err}, "
                           f"innocent: {'ok' if not innocent['failed'] else (code.group(1) if code else innocent['errors'][:1])})")

    for label, apply in variants:
        apply()
        daemon.proc.signal(signal.SIGHUP)
        time.sleep(0.4)
        callers_served(label)
        if label == "FIFO":
            # A writer opens the FIFO and closes it: a reader blocked in open() now reads an empty file.
            h.unblock_fifo(path)
            time.sleep(0.4)
            callers_served("FIFO, once a writer closed it")
        if not daemon.alive():
            res.crashes += 1
            res.fail(f"the daemon exited after '{label}'")
            return
        h.unblock_fifo(path)
        _clear(path)
        h.write_atomic(path, good)
        daemon.proc.signal(signal.SIGHUP)
        time.sleep(0.3)
    if hung:
        res.fail("no answer to ping after: " + ", ".join(hung))
    if emptied:
        res.fail("callers refused after: " + "; ".join(emptied))
    rejected = len(re.findall(r"reload rejected", daemon.proc.log_text()))
    res.note(f"{len(variants)} broken files; 'reload rejected' logged {rejected} times")
    # Last: a FIFO at the path, SIGHUP, then SIGTERM must still complete.
    make_fifo()
    daemon.proc.signal(signal.SIGHUP)
    time.sleep(0.3)
    start = time.monotonic()
    daemon.proc.signal(signal.SIGTERM)
    status = daemon.proc.wait(6)
    took = time.monotonic() - start
    res.attempts += 1
    if status is None:
        res.fail(f"SIGTERM with a FIFO reload pending: still running after {took:.1f} s")
        h.unblock_fifo(path)
        daemon.stop(3)
    else:
        res.note(f"SIGTERM with a FIFO at the config path: exit {status} in {took * 1000:.0f} ms")
        if status != 0:
            res.crashes += 1
    h.unblock_fifo(path)
    _clear(path)
    fatal = h.fatal_in_log(daemon.proc.log_text())
    if fatal:
        res.crashes += 1
        res.note(f"fatal in log: {fatal[0][:120]}")


def _clear(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


# ------------------------------------------------------------------ FIFO token files
def fifo_token_file(run, res):
    """A FIFO as a token file (at start, and swapped in by rotation) must not hang anything."""
    d = run.scenario_dir("fifo")
    provider = run.ensure_provider()
    fifo = h.make_fifo(os.path.join(d, "fifo-token"))
    tokdir = os.path.join(d, "tokens")
    os.makedirs(tokdir)
    rotating = os.path.join(tokdir, "token")
    shutil.copy(provider.endpoints["tokenFile"], rotating)
    ids = h.standard_identities(provider) + [h.identity("fifo", fifo), h.identity("rotating", rotating)]
    try:
        daemon = start_daemon(run, d, ids, log_level="info")
    except HarnessError as error:
        res.attempts += 1
        res.lost += 1
        res.fail(f"the daemon did not become ready with a FIFO token file: {str(error)[-160:]}")
        h.unblock_fifo(fifo)
        return
    try:
        for label, req in (("fifo identity", {"op": "token", "identity": "fifo", "scope": SCOPE, "id": 1}),
                           ("rotating before", {"op": "token", "identity": "rotating", "scope": SCOPE, "id": 2})):
            reply, took, err = daemon.request(req, 8)
            res.attempts += 1
            res.note(f"{label}: {('ok' if reply_granted(reply) else (reply or {}).get('error', {}).get('code')) or err} in {took * 1000:.0f} ms")
            if reply is None:
                res.lost += 1
        # Rotation swaps a FIFO in (rename over the file: inotify fires, the broker reads it).
        tmp = os.path.join(tokdir, "..new")
        os.mkfifo(tmp, 0o600)
        os.replace(tmp, rotating)
        time.sleep(1.0)
        probe = start_probe(run, d, daemon, 3, interval=50)
        for label, req in (("rotating after FIFO swap", {"op": "token", "identity": "rotating", "scope": SCOPE, "id": 3}),
                           ("rotating, new scope", {"op": "token", "identity": "rotating", "scope": "api://after-fifo/.default", "id": 4}),
                           ("ping", {"op": "ping", "id": 5})):
            reply, took, err = daemon.request(req, 8)
            res.attempts += 1
            res.note(f"{label}: {('ok' if (reply or {}).get('ok') else (reply or {}).get('error', {}).get('code')) or err} in {took * 1000:.0f} ms")
            if reply is None:
                res.lost += 1
        account_probe(res, finish_probe(probe, 20))
        start = time.monotonic()
        daemon.proc.signal(signal.SIGTERM)
        status = daemon.proc.wait(10)
        res.attempts += 1
        if status is None:
            res.fail("SIGTERM with FIFO token files: still running after 6 s")
        else:
            res.note(f"SIGTERM: exit {status} in {(time.monotonic() - start) * 1000:.0f} ms")
            if status != 0:
                res.crashes += 1
    finally:
        h.unblock_fifo(fifo)
        h.unblock_fifo(rotating)
    fatal = h.fatal_in_log(daemon.proc.log_text())
    if fatal:
        res.crashes += 1


# ------------------------------------------------------------------ 9. SIGTERM while the token service hangs
def sigterm_hung_upstream(run, res):
    """SIGTERM while the token service hangs: the daemon exits within about 2 s."""
    d = run.scenario_dir("hung")
    provider = run.ensure_provider()
    rounds = 1 if run.quick else 3
    provider.set_latency(60_000)
    try:
        for i in range(rounds):
            daemon = start_daemon(run, d, log_level="info", name=f"broker{i}")
            pending = {}
            waiter = threading.Thread(target=lambda: pending.update(r=daemon.request({"op": "token", "scope": f"api://hung-{i}/.default", "id": 1}, 30)))
            waiter.start()
            time.sleep(1.0)
            start = time.monotonic()
            daemon.proc.signal(signal.SIGTERM)
            status = daemon.proc.wait(20)
            took = time.monotonic() - start
            waiter.join(30)
            res.attempts += 1
            reply, waited, err = pending.get("r", (None, 0, "no answer"))
            answer = ((reply or {}).get("error") or {}).get("code") or err
            res.note(f"exit {status} {took * 1000:.0f} ms after SIGTERM; the waiting caller heard {answer}")
            if status is None:
                res.fail(f"still running 20 s after SIGTERM")
                daemon.stop(2)
            elif took > 3.0:
                res.fail(f"exit took {took:.1f} s (> ~2 s)")
            if status not in (None, 0):
                res.crashes += 1
            if reply is None:
                res.lost += 1
    finally:
        provider.set_latency(0)


# ------------------------------------------------------------------ 10. fd passing
def fd_passing(run, res):
    """A socket connected by one uid and passed to another is attested as the connector."""
    d = run.scenario_dir("fdpass")
    daemon = start_daemon(run, d, extra=compat_yaml(d), log_level="info")
    port = daemon.compat_port()
    rv = os.path.join(d, "rv")
    os.makedirs(rv)
    os.chmod(rv, 0o1777)
    rounds = 2 if run.quick else 6
    tally = {}
    cases = [("attacker->victim unix", ATTACKER, VICTIM, f"unix:{daemon.sock}", ["unix", "victim"], True),
             ("attacker->victim tcp", ATTACKER, VICTIM, f"tcp:{port}", ["tcp", "", str(port)], True),
             ("victim->attacker unix", VICTIM, ATTACKER, f"unix:{daemon.sock}", ["unix", "victim"], False)]
    n = 0
    for _ in range(rounds):
        for label, sender, receiver, where, ask, must_refuse in cases:
            n += 1
            point = os.path.join(rv, f"r{n}")
            recv = run.track(h.spawn_as_uid(receiver, f"recv{n}", [OTHER_PYTHON, run.helper("fdpass.py"), "receive", point] + ask, d))
            status, out, err = h.as_uid(sender, [OTHER_PYTHON, run.helper("fdpass.py"), "send", point, where], timeout=20)
            if recv.wait(20) is None:
                recv.stop(1)
            got = _json(recv.log_text()) or {}
            answer = got.get("answer", "")
            res.attempts += 1
            granted = ('"token"' in answer and '"ok":true' in answer) or ("access_token" in answer and answer.startswith("HTTP/1.1 200"))
            if not answer:
                outcome = "no answer " + (err.strip()[-60:] or recv.log_text()[-60:])
            elif granted:
                outcome = "granted"
            else:
                m = re.search(r'"code":"(\w+)"', answer) or re.search(r"HTTP/1\.1 (\d+)", answer)
                outcome = m.group(1) if m else answer[:40]
            tally.setdefault(label, []).append(outcome)
            if granted and must_refuse:
                res.wrong += 1
    for label, got in tally.items():
        res.note(f"{label}: " + ",".join(f"{x} x{got.count(x)}" for x in sorted(set(got))))
    res.note("victim->attacker grants are documented: rights travel with the connection")
    account_daemon(res, daemon)


# ------------------------------------------------------------------ malformed input
NDJSON_PROBES = [
    ("truncated", b"{\n"), ("not json", b"not json\n"), ("NULs", b'{"op":"token","scope":"' + b"\x00" * 100 + b'"}\n'),
    ("invalid UTF-8", b'{"op":"\xff\xfe\xfd"}\n'), ("deep arrays", b"[" * 60000 + b"\n"), ("deep objects", b'{"a":' * 12000 + b"\n"),
    ("huge exponent", b'{"op":"token","id":1e999999,"scope":"x"}\n'),
    ("huge minValidity", b'{"op":"token","minValiditySeconds":99999999999999999999999999,"scope":"x"}\n'),
    ("negative minValidity", b'{"op":"token","minValiditySeconds":-1,"scope":"x"}\n'),
    ("line over 64 KiB", b'{"op":"token","scope":"' + b"A" * 70000 + b'"}\n'),
    ("escaped controls", b'{"op":"token","scope":"a\\u0000b\\r\\nc","identity":"\\u0000"}\n'),
    ("duplicate keys", b'{"op":"status","op":"token","scope":"x"}\n'), ("blank lines", b"\n" * 100000 + b'{"op":"ping"}\n'),
    ("2 MiB, no newline", b"{" + b"a" * (2 << 20)), ("path identity", b'{"op":"token","identity":"../../etc/passwd","scope":"x"}\n'),
    ("nested id", b'{"op":"token","scope":"x","id":{"n":[1,2,{"a":null}]}}\n'), ("lone surrogate", b'{"op":"token","scope":"\\ud800"}\n'),
    ("scalars", b'"s"\nnull\n123\ntrue\n[]\n'), ("BOM", b'\xef\xbb\xbf{"op":"ping"}\n'),
    ("many requests", b'{"op":"ping"}\n' * 5000), ("float id", b'{"op":"ping","id":1.5e308}\n'),
    ("huge string id", b'{"op":"ping","id":"' + b"i" * 60000 + b'"}\n'),
]
# (label, payload, ambiguous: must get exactly one answer, a 400, and a close)
HTTP_PROBES = [
    ("CL+TE", b"GET /healthz HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n", True),
    ("double CL", b"GET /healthz HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\nGET /v1/token?scope=x HTTP/1.1\r\nHost: x\r\n\r\n", True),
    ("TE space colon", b"GET /healthz HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n", True),
    ("TE chunked", b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", True),
    ("obs-fold", b"GET /healthz HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", True),
    ("bare CR", b"GET /healthz HTTP/1.1\r\nHost: a\rb\r\n\r\n", True),
    ("CL -1", b"GET /healthz HTTP/1.1\r\nContent-Length: -1\r\n\r\n", True),
    ("CL overflow", b"GET /healthz HTTP/1.1\r\nContent-Length: 18446744073709551617\r\n\r\n", True),
    ("CL +5", b"GET /healthz HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello", True),
    ("CL list", b"GET /healthz HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello", False),
    ("NUL in header", b"GET /healthz HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", True),
    ("HTTP/2.0", b"GET /healthz HTTP/2.0\r\n\r\n", True), ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", False),
    ("HTTP/0.9", b"GET /healthz\r\n\r\n", False), ("absolute form", b"GET http://evil.example/healthz HTTP/1.1\r\n\r\n", False),
    ("long URI", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", False),
    ("5000 headers", b"GET /healthz HTTP/1.1\r\n" + b"X-A: b\r\n" * 5000 + b"\r\n", False),
    ("encoded controls", b"GET /v1/token?scope=%00%0d%0aX-Injected:%20yes&identity=%ff%fe HTTP/1.1\r\n\r\n", False),
    ("500 pipelined", b"GET /healthz HTTP/1.1\r\n\r\n" * 500, False),
    ("20 empty lines", b"\r\n" * 20 + b"GET /healthz HTTP/1.1\r\n\r\n", False),
    ("long method", b"A" * 100 + b" /healthz HTTP/1.1\r\n\r\n", False),
    ("body never sent", b"GET /healthz HTTP/1.1\r\nContent-Length: 10\r\n\r\n", False),
    ("HEAD+body", b"HEAD /v1/status HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /metrics HTTP/1.1\r\n\r\n", False),
    ("LF only", b"GET /healthz HTTP/1.1\nHost: x\n\n", False),
    ("query injection", b"GET /v1/token?scope=a&scope=b&identity=default&identity=victim HTTP/1.1\r\n\r\n", False),
]
COMPAT_PREFIX = b"GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://storage.azure.com HTTP/1.1\r\nMetadata: true\r\n"
COMPAT_PROBES = [
    ("CL+TE", COMPAT_PREFIX + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /msi/token HTTP/1.1\r\n\r\n", True),
    ("double CL", COMPAT_PREFIX + b"Content-Length: 0\r\nContent-Length: 30\r\n\r\nGET /msi/token HTTP/1.1\r\n\r\n", True),
    ("TE chunked", COMPAT_PREFIX + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", True),
    ("obs-fold", COMPAT_PREFIX + b"X-A: a\r\n b\r\n\r\n", True),
    ("space before colon", COMPAT_PREFIX + b"Metadata : true\r\n\r\n", True),
    ("NUL in header", COMPAT_PREFIX + b"X-A: a\x00b\r\n\r\n", True),
    ("5000 headers", COMPAT_PREFIX + b"X-A: b\r\n" * 5000 + b"\r\n", False),
    ("long URI", b"GET /metadata/" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", False),
    ("garbage", os.urandom(4096), False), ("HTTP/2.0", b"GET / HTTP/2.0\r\n\r\n", False),
    ("200 pipelined", (COMPAT_PREFIX + b"\r\n") * 200, False),
    ("duplicate resource", b"GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=a&resource=b HTTP/1.1\r\nMetadata: true\r\n\r\n", False),
]


def malformed_probes(run, res):
    """Malformed NDJSON, HTTP smuggling and garbage on the socket and the compat port: no crash, no misframing."""
    d = run.scenario_dir("malformed")
    daemon = start_daemon(run, d, extra=compat_yaml(d), log_level="info")
    port = daemon.compat_port()
    reply, _, err = daemon.request({"op": "token", "scope": SCOPE, "id": 1}, 30)
    probe = start_probe(run, d, daemon, 8 if run.quick else 20, compat_port=port, interval=30)
    repeat = 1 if run.quick else 3
    misframed, hung, outcomes = [], [], {}

    def one(where, label, payload, ambiguous, target):
        nonlocal daemon
        data, how = h.raw_exchange(target, payload, timeout=3 if label != "body never sent" else 1, half_close=label != "body never sent")
        res.attempts += 1
        statuses = re.findall(rb"HTTP/1\.[01] (\d{3})", data)
        if ambiguous and (len(statuses) != 1 or statuses[0] != b"400"):
            misframed.append(f"{where} {label}: {[s.decode() for s in statuses] or how}")
        outcomes[f"{where} {label}"] = (statuses[0].decode() if statuses else (data[:30].decode(errors="replace") or how))
        if not daemon.alive():
            res.crashes += 1
            res.note(f"crashed on {where} {label}: exit {daemon.proc.proc.returncode}")
            daemon = start_daemon(run, d, extra=compat_yaml(d, f"127.0.0.1:{port}"), log_level="info", name=f"broker-after-{res.crashes}")
            return
        ok, took = daemon.ping(3)
        if not ok:
            hung.append(f"{where} {label}")

    for _ in range(repeat):
        for label, payload in NDJSON_PROBES:
            one("ndjson", label, payload, False, daemon.sock)
        for label, payload, ambiguous in HTTP_PROBES:
            one("http", label, payload, ambiguous, daemon.sock)
        for label, payload, ambiguous in COMPAT_PROBES:
            one("compat", label, payload, ambiguous, ("127.0.0.1", port))
    account_probe(res, finish_probe(probe, 60))
    if misframed:
        res.fail(f"{len(misframed)} ambiguous requests not refused with one 400: " + "; ".join(misframed[:4]))
    if hung:
        res.fail("no ping answer after: " + ", ".join(hung[:4]))
    res.note(f"{len(NDJSON_PROBES)} NDJSON, {len(HTTP_PROBES)} HTTP and {len(COMPAT_PROBES)} compat probes"
             + (f" x{repeat}" if repeat > 1 else "") + "; compat answers: " + ", ".join(f"{k.split(' ', 1)[1]}={v}" for k, v in outcomes.items() if k.startswith("compat"))[:300])
    account_daemon(res, daemon)


# ------------------------------------------------------------------ SIGKILL under load, socket activation
def sigkill_socket_activation(run, res):
    """SIGKILL (and SIGTERM) under load with a held listening socket: only requests in flight in the killed process may be lost."""
    d = run.scenario_dir("sigkill")
    provider = run.ensure_provider()
    path = os.path.join(d, "broker.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o666)
    listener.listen(4096)
    notify = NotifySocket(os.path.join(d, "notify.sock"))
    yaml = h.config_yaml(path, provider, h.standard_identities(provider), log_level="info",
                         extra="limits: { requestsPerSecondPerUID: 0, maxConnectionsPerUID: 4096 }")
    check_config(run, d, yaml)
    h.write_atomic(os.path.join(d, "config.yaml"), yaml)
    lfd = listener.fileno()
    generation = [0]

    def spawn():
        generation[0] += 1
        t = time.monotonic()
        env = {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "broker", "NOTIFY_SOCKET": notify.path}
        # As systemd does: the socket becomes fd 3 and LISTEN_PID names the process that execs the daemon.
        wrapper = [run.python, "-c", "import os, sys; fd = int(sys.argv[1]); fd != 3 and (os.dup2(fd, 3), os.close(fd)); os.set_inheritable(3, True); "
                   "os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.argv[2], sys.argv[2:])", str(lfd)]
        daemon = h.Daemon(run, d, None, name=f"broker{generation[0]}", env=env, wait_ready=False, socket_path=path, pass_fds=(lfd,),
                          argv_prefix=wrapper)
        if not notify.wait("READY=1", after=t, timeout=40):
            raise HarnessError(f"no READY=1 from the socket-activated daemon: {daemon.proc.log_text()[-300:]}")
        return daemon

    records, stop = [], threading.Event()
    lock = threading.Lock()

    def client():
        while not stop.is_set():
            start = time.monotonic()
            connected, ok, err = None, False, None
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(20)
                    s.connect(path)
                    connected = time.monotonic()
                    s.sendall((json.dumps({"op": "token", "scope": SCOPE, "id": 1}) + "\n").encode())
                    data = b""
                    while not data.endswith(b"\n"):
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                reply = json.loads(data) if data else None
                ok = reply_granted(reply)
                if not ok:
                    err = ((reply or {}).get("error") or {}).get("code") or "closed without an answer"
            except Exception as error:  # noqa: BLE001
                err = f"{type(error).__name__}"
            with lock:
                records.append((start, connected, time.monotonic(), ok, err))
            time.sleep(0.002)

    kills, terms = (4, 2) if run.quick else (15, 5)
    kill_windows, term_times, daemon, threads = [], [], None, []
    try:
        daemon = spawn()
        threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        for i in range(kills + terms):
            time.sleep(0.7)
            if i < kills:
                # From before the signal until the process is reaped: a request begun in that
                # window can only have been accepted by the dying process (the next one starts
                # after the wait), so losing it is expected.
                sent = time.monotonic()
                daemon.proc.signal(signal.SIGKILL)
                daemon.proc.wait(10)
                kill_windows.append((sent, time.monotonic()))
            else:
                term_times.append(time.monotonic())
                daemon.proc.signal(signal.SIGTERM)
                status = daemon.proc.wait(15)
                if status not in (0,):
                    res.crashes += 1
                    res.note(f"SIGTERM restart: exit status {status}")
            daemon = spawn()
        time.sleep(0.7)
    finally:
        stop.set()
        for t in threads:
            t.join(25)
        if daemon:
            daemon.stop(10)
        listener.close()
        notify.close()
    expected, unexpected, examples, latencies = 0, 0, [], []
    for start, connected, end, ok, err in records:
        if ok:
            latencies.append((end - start) * 1000)
            continue
        # Overlapping a SIGKILL (signal sent to process reaped): the killed process may have accepted it.
        in_flight = any(start <= reaped and sent <= end for sent, reaped in kill_windows)
        if in_flight:
            expected += 1
        else:
            unexpected += 1
            if len(examples) < 3:
                events = [(abs(start - t), f"{kind} {(start - t) * 1000:+.0f} ms")
                          for kind, t in [("SIGKILL", sent) for sent, _ in kill_windows] + [("SIGTERM", t) for t in term_times]]
                examples.append(f"{err} (started {min(events)[1] if events else '?'}, connected: {connected is not None})")
    res.attempts = len(records)
    res.lost = unexpected
    if latencies:
        res.latency(max(latencies))
    res.note(f"{kills} SIGKILL + {terms} SIGTERM restarts on a held socket; {len(latencies)} served, "
             f"{expected} lost in flight in a SIGKILLed process (expected), {unexpected} other failures {examples}; "
             f"p99 {h.percentile(latencies, 99):.0f} ms")


SCENARIOS = [
    ("watchdog-freeze", watchdog_freeze),
    ("loopback-flood", loopback_flood),
    ("exe-userns", exe_userns),
    ("exe-connect-exec", exe_connect_exec),
    ("compat-timewait-restart", compat_timewait_restart),
    ("hostile-upstream", hostile_upstream),
    ("retry-after-429", retry_after_429),
    ("scope-flood-log", scope_flood_log),
    ("ipv4-mapped", ipv4_mapped),
    ("broken-config-sighup", broken_config_sighup),
    ("fifo-token-file", fifo_token_file),
    ("sigterm-hung-upstream", sigterm_hung_upstream),
    ("fd-passing", fd_passing),
    ("malformed-probes", malformed_probes),
    ("sigkill-socket-activation", sigkill_socket_activation),
]
