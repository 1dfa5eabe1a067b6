#!/usr/bin/env python3
"""Node mode on a simulated node (issue: node-mode figures). Run through `scripts/bench node`.

A kubelet pods directory in a temp dir, written as the kubelet writes it (projected volumes by
the AtomicWriter sequence), pods as real cgroups under the cgroup v2 mount named as the systemd
driver names them, the real daemon in node mode and the dev provider minting each pod's tokens.
Measured:

- new pod → usable: time from the AtomicWriter rename of the federated token's `..data` to the
  first successful token answer for a process in that pod (polled every millisecond);
- churn: pods created and deleted at a fixed rate; the broker's file descriptors, inotify
  watches, threads and RSS during and after; for every deleted pod, the time from the removal
  of its directory to a `forbidden` answer on the connection its process had been using;
- a cold burst from every pod for one new scope: exchanges counted by the provider;
- RSS with every pod and 30 cached scopes per service account, idle CPU over 10 s;
- cached answers per second on a few connections from a process in a pod vs from outside
  (a configured identity), with bench/loadgen.

The orchestrator is one process. It joins a pod's cgroup (writing its pid to cgroup.procs)
only to connect: the broker attests a caller once, when it accepts the connection, so the
process stays in the cgroup until a first answer on that connection proves the accept, then
goes back to its own cgroup. Everything it creates is removed on exit (processes by PID,
cgroups deepest first, the temp dir).
"""
import argparse
import ctypes
import errno
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import Stamped, machine  # noqa: E402

MiB = 1024 * 1024
FEDERATION_AUDIENCE = "api://AzureADTokenExchange"
API_AUDIENCE = "https://kubernetes.default.svc"
BURST_SCOPE = "https://bench-scope-00.example/.default"


def log(message):
    print(f"bench node: {message}", file=sys.stderr, flush=True)


def scope(k):
    return f"https://bench-scope-{k:02d}.example/.default"


LIBC = ctypes.CDLL(None, use_errno=True)


def mount_tmpfs(path):
    if LIBC.mount(b"tmpfs", path.encode(), b"tmpfs", 0, b"size=4m,mode=0755") != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount tmpfs on {path}: {os.strerror(e)}")


def umount(path):
    if LIBC.umount2(path.encode(), 0) != 0 and LIBC.umount2(path.encode(), 2) != 0:  # MNT_DETACH
        e = ctypes.get_errno()
        log(f"cannot unmount {path}: {os.strerror(e)}")


def cgroup2_mount():
    for base in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(f"{base}/cgroup.controllers") and os.access(f"{base}/cgroup.procs", os.W_OK):
            return base
    return None


def own_cgroup():
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return "/"


class Pod:
    def __init__(self, uid, account):
        self.uid = uid
        self.account = account  # index of the service account
        self.cgroup = None  # the container's cgroup directory, which processes join
        self.cgroups = []  # every cgroup directory made for it, outermost first
        self.directory = None
        self.conn = None
        self.tokens = None  # (federated, api) JWTs
        self.mounts = []  # tmpfs mounts made for its projected volumes


class Node:
    """The pods directory and the cgroups, as the kubelet (systemd driver) lays them out."""

    def __init__(self, workdir):
        self.mount = cgroup2_mount()
        if not self.mount:
            raise RuntimeError("needs a writable cgroup v2 mount (root)")
        self.home = self.mount + own_cgroup().rstrip("/")
        self.pods_directory = os.path.join(workdir, "pods")
        os.makedirs(self.pods_directory)
        self.created = []  # cgroup directories, in creation order
        self.root = f"{self.mount}/tbnode{random.getrandbits(32):08x}.slice"
        self.burstable = f"{self.root}/kubepods.slice/kubepods-burstable.slice"
        for d in (self.root, f"{self.root}/kubepods.slice", self.burstable):
            self._mkdir(d)
        self.writes = 0
        self.inside = False
        self.mounts = set()  # every tmpfs mounted, for the clean-up

    def _mkdir(self, d):
        os.mkdir(d)
        self.created.append(d)

    def add_pod(self, pod):
        """The pod's cgroups and its directory (empty `volumes/`), as the kubelet makes them first."""
        uid = pod.uid
        underscored = uid.replace("-", "_")
        pod_slice = f"{self.burstable}/kubepods-burstable-pod{underscored}.slice"
        container = f"{pod_slice}/cri-containerd-{random.getrandbits(256):064x}.scope"
        self._mkdir(pod_slice)
        self._mkdir(container)
        pod.directory = os.path.join(self.pods_directory, uid)
        os.makedirs(os.path.join(pod.directory, "volumes"))
        pod.cgroup, pod.cgroups = container, [pod_slice, container]

    def project(self, pod, volume, files, mount=False):
        """kubelet's AtomicWriter (into a fresh tmpfs, as the kubelet mounts one per projected
        volume, when `mount`); returns the monotonic time right after `..data` was swapped."""
        directory = os.path.join(pod.directory, "volumes", "kubernetes.io~projected", volume)
        if not os.path.isdir(directory):
            os.makedirs(directory)
            if mount:
                mount_tmpfs(directory)
                pod.mounts.append(directory)
                self.mounts.add(directory)
        self.writes += 1
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + f"{self.writes:09d}"
        try:
            previous = os.readlink(os.path.join(directory, "..data"))
        except OSError:
            previous = None
        os.mkdir(os.path.join(directory, stamp))
        for name, text in files.items():
            with open(os.path.join(directory, stamp, name), "w") as f:
                f.write(text)
        tmp = os.path.join(directory, "..data_tmp")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(stamp, tmp)
        os.rename(tmp, os.path.join(directory, "..data"))
        swapped = time.monotonic()
        for name in files:
            link = os.path.join(directory, name)
            if not os.path.islink(link):
                os.symlink(f"..data/{name}", link)
        if previous and previous != stamp:
            shutil.rmtree(os.path.join(directory, previous), ignore_errors=True)
        return swapped

    def start_pod(self, pod, namespace, mount=False):
        """The kubelet's volume set-up: the default API token volume, then the federated one."""
        federated, api = pod.tokens
        self.project(pod, "kube-api-access-" + pod.uid[:5], {"token": api, "namespace": namespace, "ca.crt": "-----BEGIN CERTIFICATE-----\n"}, mount)
        return self.project(pod, "azure-identity-token", {"azure-identity-token": federated}, mount)

    def delete_pod_directory(self, pod):
        """The kubelet's tear-down: volumes unmounted, then the pod's directory removed."""
        for directory in pod.mounts:
            umount(directory)
            self.mounts.discard(directory)
        pod.mounts = []
        shutil.rmtree(pod.directory)

    def remove_cgroups(self, pod):
        for d in reversed(pod.cgroups):
            self._rmdir(d)

    def _rmdir(self, d, patience=5.0):
        deadline = time.monotonic() + patience
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as error:
                if error.errno != errno.EBUSY or time.monotonic() > deadline:
                    log(f"cannot remove cgroup {d}: {error}")
                    return
                time.sleep(0.05)
        try:
            self.created.remove(d)
        except ValueError:
            pass

    def enter(self, cgroup):
        with open(f"{cgroup}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
        self.inside = True

    def leave(self):
        with open(f"{self.home}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
        self.inside = False

    def remove(self):
        if self.inside:
            try:
                self.leave()
            except OSError as error:
                log(f"cannot go back to {self.home}: {error}")
        for directory in list(self.mounts):
            umount(directory)
        self.mounts.clear()
        for d in reversed(list(self.created)):
            self._rmdir(d)


class Conn:
    """A connection to the broker, made from inside a cgroup (or from outside)."""

    def __init__(self, path, node=None, cgroup=None):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.buffer = b""
        self.next_id = 1
        if cgroup:
            node.enter(cgroup)
        try:
            self.s.connect(path)
            # Answered only after the accept, and the broker attests at accept: from now on
            # the process may leave the cgroup.
            reply = self.call({"op": "ping"})
            if not reply.get("ok"):
                raise RuntimeError(f"ping answered {reply}")
        finally:
            if cgroup:
                node.leave()

    def send(self, request):
        request = dict(request, id=self.next_id)
        self.next_id += 1
        self.s.sendall((json.dumps(request, separators=(",", ":")) + "\n").encode())

    def read_reply(self):
        while b"\n" not in self.buffer:
            chunk = self.s.recv(1 << 16)
            if not chunk:
                raise RuntimeError("the broker closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def try_reply(self):
        """A reply if a whole line is there (non-blocking); None otherwise."""
        try:
            chunk = self.s.recv(1 << 16, socket.MSG_DONTWAIT)
            if not chunk:
                raise RuntimeError("the broker closed the connection")
            self.buffer += chunk
        except BlockingIOError:
            pass
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def call(self, request):
        self.send(request)
        return self.read_reply()

    def fileno(self):
        return self.s.fileno()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def error_code(reply):
    e = reply.get("error") or {}
    return e.get("code") if isinstance(e, dict) else str(e)


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


class NodeBench:
    def __init__(self, args):
        self.args = args
        self.workdir = tempfile.mkdtemp(prefix="tb-node.", dir="/tmp")
        os.chmod(self.workdir, 0o755)
        self.children = []
        self.conns = []
        self.node = None
        self.pods = []  # live pods, oldest first
        self.uid_count = 0
        self.r = {"mode": "quick" if args.quick else "full", "build": args.build_kind, "machine": machine(),
                  "pods": args.pods, "accounts": args.accounts, "scopes": args.scopes, "churnRate": args.churn_rate,
                  "churnSeconds": args.churn_seconds}

    # ------------------------------------------------------------------ processes
    def start(self, name, argv):
        child = Stamped(name, argv, self.workdir)
        self.children.append(child)
        return child

    def wait_for(self, what, predicate, timeout=30.0, child=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if child and child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited while waiting for {what}; see {child.logfile.name}")
            time.sleep(0.02)
        raise RuntimeError(f"timed out waiting for {what}")

    def cleanup(self):
        for c in self.conns:
            c.close()
        for pod in self.pods:
            if pod.conn:
                pod.conn.close()
        for child in reversed(self.children):
            try:
                child.stop()
            except Exception as error:
                log(f"stopping {child.name}: {error}")
        if self.node:
            self.node.remove()
        if self.args.keep:
            log(f"kept {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ provider
    def client_id(self, i):
        return f"0b0de000-0000-4000-8000-{i + 1:012x}"

    def account(self, i):
        return (f"team-{i:02d}", "app")

    def start_provider(self):
        directory = os.path.join(self.workdir, "provider")
        argv = [os.path.join(os.path.dirname(self.args.daemon), "tokenbroker-dev-provider"), "--state-dir", directory, "--log-level", "info"]
        for i in range(self.args.accounts):
            ns, name = self.account(i)
            argv += ["--app", f"{self.client_id(i)}=system:serviceaccount:{ns}:{name}"]
        self.provider = self.start("provider", argv)
        file = os.path.join(directory, "provider.json")
        self.wait_for("provider.json", lambda: os.path.exists(file), child=self.provider)
        time.sleep(0.05)
        with open(file) as f:
            self.endpoints = json.load(f)
        self.tls = ssl.create_default_context(cafile=self.endpoints["caFile"])
        self._https_conns = {}

    def https(self, method, url, body=None):
        u = urllib.parse.urlsplit(url)
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(3):
            conn = self._https_conns.get(u.netloc)
            if conn is None:
                conn = self._https_conns[u.netloc] = http.client.HTTPSConnection(u.hostname, u.port, context=self.tls, timeout=30)
            try:
                conn.request(method, u.path or "/", body=data, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                text = response.read().decode()
                if response.status >= 300:
                    raise RuntimeError(f"{method} {url}: {response.status} {text[:300]}")
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    del self._https_conns[u.netloc]
                return json.loads(text) if text else None
            except (http.client.HTTPException, ConnectionError, OSError):
                conn.close()
                self._https_conns.pop(u.netloc, None)
                if attempt == 2:
                    raise
        return None

    def stats(self):
        return self.https("GET", self.endpoints["authorityHost"] + "/_dev/stats")

    def mint(self, pod):
        ns, name = self.account(pod.account)
        url = self.endpoints["issuerURL"] + "/_dev/mint"
        federated = self.https("POST", url, {"namespace": ns, "serviceAccount": name, "podUID": pod.uid, "aud": [FEDERATION_AUDIENCE]})["token"]
        api = self.https("POST", url, {"namespace": ns, "serviceAccount": name, "podUID": pod.uid, "aud": [API_AUDIENCE]})["token"]
        return federated, api

    # ------------------------------------------------------------------ broker
    def start_broker(self):
        e = self.endpoints
        self.sock = os.path.join(self.workdir, "broker.sock")
        config = os.path.join(self.workdir, "config.yaml")
        # The issuer's keys: a pod's token counts only signed by one of them.
        keys = os.path.join(self.workdir, "service-account-keys.json")
        with open(keys, "w") as f:
            json.dump(self.https("GET", e["issuerURL"] + "/openid/v1/jwks"), f)
        with open(config, "w") as f:
            f.write(
                f"socket: {{ path: {self.sock}, mode: \"0666\" }}\n"
                f"upstream: {{ caFile: {e['caFile']} }}\n"
                f"log: {{ level: info }}\n"
                # One uid (root) is every caller here: lift the per-uid limits (not what is measured).
                f"limits: {{ maxConnections: 4096, maxConnectionsPerUID: 4096, requestsPerSecondPerUID: 0 }}\n"
                f"kubernetes: {{ serviceAccountKeys: {keys}, podsDirectory: {self.node.pods_directory}, tenantId: \"{e['tenantId']}\", "
                f"authorityHost: \"{e['authorityHost']}\", callerEnvironment: true }}\n"
                f"identities:\n"
                f"  - name: default\n"
                f"    source: {{ file: {e['tokenFile']} }}\n"
                f"    exchange:\n"
                f"      entra: {{ tenantId: \"{e['tenantId']}\", clientId: \"{e['clientId']}\", authorityHost: \"{e['authorityHost']}\" }}\n")
        self.broker = self.start("broker", [self.args.daemon, "--config", config, "--log-format", "text"])
        self.wait_for("the broker socket", lambda: os.path.exists(self.sock) and self.broker.wait_line("ready", timeout=0.01), child=self.broker)
        self.pid = self.broker.proc.pid

    # ------------------------------------------------------------------ /proc
    def resources(self):
        pid = self.pid
        fds = os.listdir(f"/proc/{pid}/fd")
        watches = 0
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    watches += sum(1 for line in f if line.startswith("inotify wd:"))
            except OSError:
                pass
        status = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                status[k] = v.strip()
        return {"fds": len(fds), "watches": watches, "threads": int(status["Threads"]),
                "rss": int(status["VmRSS"].split()[0]) * 1024, "rssAnon": int(status["RssAnon"].split()[0]) * 1024}

    def cpu_ticks(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    # ------------------------------------------------------------------ pods
    def new_pod(self, account):
        """A pod to be (its UID and service account; nothing on disk yet)."""
        self.uid_count += 1
        return Pod(str(uuid.uuid4()), account)

    def request(self, pod, k=0):
        return {"op": "token", "scope": scope(k), "clientId": self.client_id(pod.account)}

    def fresh_request(self, pod):
        """The same token, asked differently every time (no answer of the connection repeats)."""
        self.fresh_count = getattr(self, "fresh_count", 0) + 1
        return dict(self.request(pod), minValiditySeconds=60 + self.fresh_count % 1000)

    def populate(self):
        """The node's pods: cgroups, directories, both projected tokens each."""
        n = self.args.pods
        t = time.monotonic()
        pods = [self.new_pod(i % self.args.accounts) for i in range(n)]
        for pod in pods:
            pod.tokens = self.mint(pod)
        self.r["mintSeconds"] = time.monotonic() - t
        t = time.monotonic()
        for pod in pods:
            self.node.add_pod(pod)
            self.node.start_pod(pod, self.account(pod.account)[0])
            self.pods.append(pod)
        self.r["populateSeconds"] = time.monotonic() - t
        log(f"{n} pods: minted {2 * n} tokens in {self.r['mintSeconds']:.1f} s, written in {self.r['populateSeconds']:.2f} s")

    def wait_pods_known(self, pods, timeout=10.0):
        """Every pod's status names its projected token (a connection from inside each)."""
        deadline = time.monotonic() + timeout
        conns = []
        for pod in pods:
            conn = Conn(self.sock, self.node, pod.cgroup)
            while True:
                reply = conn.call({"op": "status"})
                pod_status = (reply.get("status") or {}).get("pod") or {}
                if pod_status.get("tokens"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pod {pod.uid} not known to the broker after {timeout} s: {reply}")
                time.sleep(0.01)
            conns.append(conn)
        return conns

    # ------------------------------------------------------------------ scenarios
    def cold_burst(self, conns):
        """One new scope from every pod at once, with 50 ms upstream latency."""
        before = self.stats()["byScope"].get(BURST_SCOPE, 0)
        self.https("POST", self.endpoints["authorityHost"] + "/_dev/latency", {"milliseconds": 50})
        try:
            t0 = time.monotonic()
            for pod, conn in zip(self.pods, conns):
                conn.send(self.request(pod, 0))
            times, bad = [], []
            for pod, conn in zip(self.pods, conns):
                reply = conn.read_reply()
                times.append(time.monotonic() - t0)
                if not reply.get("ok"):
                    bad.append(reply)
        finally:
            self.https("POST", self.endpoints["authorityHost"] + "/_dev/latency", {"milliseconds": 0})
        exchanges = self.stats()["byScope"].get(BURST_SCOPE, 0) - before
        self.r["burst"] = {"requests": len(conns), "exchanges": exchanges, "errors": len(bad), "firstErrors": bad[:3],
                           "lastAnswerMs": max(times) * 1e3, "p50Ms": percentile(times, 50) * 1e3}
        log(f"cold burst: {len(conns)} pods, {exchanges} exchanges, {len(bad)} errors, last answer after {max(times) * 1e3:.0f} ms")

    def fill(self, conns):
        """Every service account: the other scopes, pipelined on one pod's connection."""
        t = time.monotonic()
        errors = 0
        first = {}
        for pod, conn in zip(self.pods, conns):
            first.setdefault(pod.account, (pod, conn))
        if self.args.fill_serial:
            # One exchange at a time (a diagnostic: what the concurrency of the fill costs in RSS).
            for pod, conn in first.values():
                for k in range(1, self.args.scopes):
                    if not conn.call(self.request(pod, k)).get("ok"):
                        errors += 1
        else:
            for pod, conn in first.values():
                for k in range(1, self.args.scopes):
                    conn.send(self.request(pod, k))
            for pod, conn in first.values():
                for k in range(1, self.args.scopes):
                    if not conn.read_reply().get("ok"):
                        errors += 1
        self.r["fill"] = {"tokens": len(first) * self.args.scopes, "seconds": time.monotonic() - t, "errors": errors, "serial": self.args.fill_serial}
        log(f"filled {len(first) * self.args.scopes} tokens in {self.r['fill']['seconds']:.1f} s, {errors} errors")

    def idle_cpu(self, seconds=10.0):
        ticks = os.sysconf("SC_CLK_TCK")
        before, t = self.cpu_ticks(), time.monotonic()
        time.sleep(seconds)
        used, elapsed = self.cpu_ticks() - before, time.monotonic() - t
        self.r["idleCpu"] = {"seconds": elapsed, "cpuSeconds": used / ticks, "percentOfCore": used / ticks / elapsed * 100}
        log(f"idle CPU over {elapsed:.1f} s: {used / ticks * 1e3:.0f} ms ({used / ticks / elapsed * 100:.2f} % of a core)")

    def rescan_cost(self, changes=20, spacing=0.1):
        """Broker CPU per change of the mount table (each rescans every pod): a tmpfs mounted
        and unmounted beside the pods directory, `spacing` apart."""
        probe = os.path.join(self.workdir, "mount-probe")
        os.mkdir(probe)
        ticks = os.sysconf("SC_CLK_TCK")
        time.sleep(spacing)
        before = self.cpu_ticks()
        for i in range(changes):
            if i % 2 == 0:
                mount_tmpfs(probe)
                self.node.mounts.add(probe)
            else:
                umount(probe)
                self.node.mounts.discard(probe)
            time.sleep(spacing)
        used = (self.cpu_ticks() - before) / ticks
        os.rmdir(probe)
        self.r["rescan"] = {"changes": changes, "cpuSeconds": used, "msPerChange": used / changes * 1e3}
        log(f"mount table changes: {changes} in {changes * spacing:.1f} s, broker CPU {used * 1e3:.0f} ms ({used / changes * 1e3:.1f} ms each)")

    def loadgen(self, request, cgroup=None):
        a = self.args
        argv = [os.path.join(a.tools, "loadgen"), "--unix", self.sock, "--mode", "ndjson", "-c", str(a.conns), "-p", "1",
                "-d", str(a.duration), "-w", str(a.warmup), "--json", "--request", json.dumps(request, separators=(",", ":"))]
        if cgroup:
            # Joins the pod's cgroup, then becomes the load generator (same pid).
            argv = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup] + argv
        before = self.cpu_ticks()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=a.duration + a.warmup + 60)
        used = self.cpu_ticks() - before
        if not out.stdout.strip():
            raise RuntimeError(f"loadgen failed: {out.stderr}")
        result = json.loads(out.stdout)
        if result.get("answeredInclWarmup"):
            result["cpuUsPerReq"] = used / os.sysconf("SC_CLK_TCK") * 1e6 / result["answeredInclWarmup"]
        return result

    def throughput(self):
        pod = self.pods[0]
        pod_request = self.request(pod, 0)
        config_request = {"op": "token", "scope": scope(0)}
        conn = Conn(self.sock)
        first = conn.call(config_request)
        conn.close()
        if not first.get("ok"):
            raise RuntimeError(f"the configured identity got no token: {first}")
        rounds = []
        for i in range(self.args.rounds):
            p = self.loadgen(pod_request, pod.cgroup)
            c = self.loadgen(config_request)
            rounds.append({"pod": p, "configured": c})
            log(f"round {i + 1}: pod caller {p['rps']:.0f} req/s (p99 {p['p99us']:.0f} µs, {p.get('cpuUsPerReq', 0):.1f} µs CPU/req, "
                f"{p.get('errors', 0)} errors), configured {c['rps']:.0f} req/s (p99 {c['p99us']:.0f} µs, {c.get('cpuUsPerReq', 0):.1f} µs CPU/req)")
        self.r["throughput"] = rounds

    def churn(self, seconds, mount=False, name="churn"):
        """Pods created and deleted at `churn_rate` per second, oldest first (with `mount`, each
        new pod's projected volumes are tmpfs mounts, as the kubelet makes them)."""
        a = self.args
        total = int(round(a.churn_rate * seconds))
        t = time.monotonic()
        fresh = [self.new_pod(random.randrange(a.accounts)) for _ in range(total)]
        for pod in fresh:
            pod.tokens = self.mint(pod)
        log(f"churn: minted {2 * total} tokens in {time.monotonic() - t:.1f} s")

        interval = 1.0 / a.churn_rate
        created_lat = []
        deleted_lat = {"active": [], "fresh": []}
        served_after_delete = {"active": [], "fresh": []}  # seconds after the removal, of ok answers
        refusal_codes = {}
        creating = {}  # pod -> [t_swap, waiting reply?, last send]
        deleting = {}
        samples = []
        poll = {id(creating): 0.001, id(deleting): 0.005}  # seconds between requests on one connection
        deadline_extra = 5.0
        ticks_before = self.cpu_ticks()
        t0 = time.monotonic()
        next_tick, next_sample, i = t0, t0, 0
        late_ticks = 0
        while True:
            now = time.monotonic()
            if i < total and now >= next_tick:
                if now - next_tick > interval:
                    late_ticks += 1
                # The oldest pod goes: its process asks once more (an active client), then the
                # kubelet removes its directory, then its cgroups.
                # Two connections: "active" repeats the request its process just made (what a
                # client polling for a token does), "fresh" makes every request different (a
                # new minValiditySeconds each time), so each is resolved anew.
                old = self.pods.pop(0)
                if old.conn is None:
                    old.conn = Conn(self.sock, self.node, old.cgroup)
                fresh_conn = Conn(self.sock, self.node, old.cgroup)
                for conn, request in ((fresh_conn, self.fresh_request(old)), (old.conn, self.request(old))):
                    reply = conn.call(request)
                    if not reply.get("ok"):
                        raise RuntimeError(f"pod {old.uid} was not served before its deletion: {reply}")
                t_del = time.monotonic()
                self.node.delete_pod_directory(old)
                self.node.remove_cgroups(old)
                deleting[(old, "active")] = [t_del, False, 0.0, old.conn]
                deleting[(old, "fresh")] = [t_del, False, 0.0, fresh_conn]
                # A new pod: cgroups, a connection from inside, then its volumes.
                pod = fresh[i]
                self.node.add_pod(pod)
                pod.conn = Conn(self.sock, self.node, pod.cgroup)
                swapped = self.node.start_pod(pod, self.account(pod.account)[0], mount)
                creating[(pod, "new")] = [swapped, False, 0.0, pod.conn]
                self.pods.append(pod)
                i += 1
                next_tick += interval
            if now >= next_sample:
                samples.append(self.resources())
                next_sample += 1.0
            now = time.monotonic()
            for table in (creating, deleting):
                for (pod, kind), state in table.items():
                    if not state[1] and now - state[2] >= poll[id(table)]:
                        state[3].send(self.fresh_request(pod) if kind == "fresh" else self.request(pod))
                        state[1], state[2] = True, now
            for key, state in list(creating.items()):
                if state[1]:
                    reply = state[3].try_reply()
                    if reply is not None:
                        state[1] = False
                        if reply.get("ok"):
                            created_lat.append(time.monotonic() - state[0])
                            del creating[key]
                        elif now - state[0] > deadline_extra:
                            raise RuntimeError(f"new pod {key[0].uid} not served {deadline_extra} s after its token was written: {reply}")
            for key, state in list(deleting.items()):
                if state[1]:
                    reply = state[3].try_reply()
                    if reply is not None:
                        kind = key[1]
                        state[1] = False
                        elapsed = time.monotonic() - state[0]
                        if reply.get("ok"):
                            served_after_delete[kind].append(elapsed)
                        else:
                            code = error_code(reply)
                            refusal_codes[code] = refusal_codes.get(code, 0) + 1
                            if code == "forbidden":
                                deleted_lat[kind].append(elapsed)
                                state[3].close()
                                del deleting[key]
                        if key in deleting and elapsed > deadline_extra:
                            raise RuntimeError(f"deleted pod {key[0].uid} ({kind}) not refused as forbidden {deadline_extra} s after its removal: {reply}")
            if i >= total and not creating and not deleting:
                break
            waits = [next_tick - time.monotonic()] if i < total else []
            waits.append(0.001)
            time.sleep(max(0.0, min(waits)))
        churn_seconds = time.monotonic() - t0
        cpu = (self.cpu_ticks() - ticks_before) / os.sysconf("SC_CLK_TCK")
        log(f"{name}: {total} pods created and {total} deleted in {churn_seconds:.1f} s ({late_ticks} ticks late), "
            f"broker CPU {cpu / churn_seconds * 100:.1f} % of a core")

        # Afterwards: no client connection left; the same number of pods as before.
        ended = time.monotonic()
        settling = [dict(self.resources(), at=0.0)]
        for pod in self.pods:
            if pod.conn:
                pod.conn.close()
                pod.conn = None
        while time.monotonic() - ended < a.settle:
            time.sleep(0.25)
            settling.append(dict(self.resources(), at=time.monotonic() - ended))
        after = self.resources()
        self.r[name] = {
            "pods": total, "seconds": churn_seconds, "lateTicks": late_ticks, "mounts": mount,
            "cpuPercentOfCore": cpu / churn_seconds * 100,
            "createdMs": {"n": len(created_lat), "p50": percentile(created_lat, 50) * 1e3, "p99": percentile(created_lat, 99) * 1e3,
                          "max": max(created_lat) * 1e3},
            "deletedMs": {kind: {"n": len(xs), "p50": percentile(xs, 50) * 1e3, "p99": percentile(xs, 99) * 1e3,
                                 "max": max(xs) * 1e3, "over1s": sum(1 for x in xs if x > 1.0)} for kind, xs in deleted_lat.items()},
            "servedAfterDelete": {kind: {"answers": len(xs), "latestMs": max(xs, default=0) * 1e3} for kind, xs in served_after_delete.items()},
            "refusalCodes": refusal_codes,
            "during": {k: max(s[k] for s in samples) for k in ("fds", "watches", "threads", "rss")},
            "after": after,
            "settleSeconds": a.settle,
            "samples": samples, "settling": settling,
        }

    def perf_report(self, data):
        """The hottest symbols of the broker during the churn with mounts, on stderr."""
        demangle = shutil.which("swift-demangle")
        for flags, limit in ((["--no-children"], "1"), (["--children"], "4")):
            out = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none", "--sort", "symbol", "--percent-limit", limit, *flags],
                                 capture_output=True, text=True, timeout=300)
            text = "\n".join(re.sub(r"\s+-\s+-\s*$", "", line).rstrip() for line in out.stdout.splitlines() if line and not line.startswith("#"))
            if demangle:
                text = subprocess.run([demangle, "--simplified"], input=text, capture_output=True, text=True).stdout
            print(f"## perf report {' '.join(flags)} (the broker during the churn with tmpfs mounts)\n\n{text}\n", file=sys.stderr)

    # ------------------------------------------------------------------ main
    def run(self):
        started = time.monotonic()
        self.r["loadavgStart"] = os.getloadavg()
        self.node = Node(self.workdir)
        self.start_provider()
        self.start_broker()
        time.sleep(0.5)
        self.r["empty"] = self.resources()
        log(f"broker up (pid {self.pid}), no pods: {self.r['empty']}")
        self.populate()
        time.sleep(1.0)
        self.r["withPods"] = self.resources()
        conns = self.wait_pods_known(self.pods)
        self.conns += conns
        self.cold_burst(conns)
        time.sleep(0.5)
        self.r["afterBurst"] = self.resources()
        self.fill(conns)
        for c in conns:
            c.close()
        self.conns = []
        time.sleep(1.0)
        self.r["withTokens"] = self.resources()
        log(f"{self.args.pods} pods, {self.args.accounts * self.args.scopes} tokens: {self.r['withTokens']}")
        self.idle_cpu(10.0)
        if self.args.mount_seconds > 0:
            self.rescan_cost()
        self.throughput()
        time.sleep(1.0)
        self.r["beforeChurn"] = self.resources()
        log(f"before churn: {self.r['beforeChurn']}")
        self.churn(self.args.churn_seconds)
        log(f"after churn: {self.r['churn']['after']}")
        if self.args.mount_seconds > 0:
            perf = None
            if self.args.profile:
                data = os.path.join(self.workdir, "perf.data")
                perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-o", data, "-p", str(self.pid)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                self.churn(self.args.mount_seconds, mount=True, name="mountChurn")
            finally:
                if perf:
                    perf.send_signal(signal.SIGINT)
                    perf.wait(timeout=60)
            if perf:
                self.perf_report(data)
            log(f"after the churn with tmpfs mounts: {self.r['mountChurn']['after']}")
        self.r["seconds"] = time.monotonic() - started
        self.r["loadavgEnd"] = os.getloadavg()
        return self.r


def report(r, args):
    lines = []
    add = lines.append
    mc = r["machine"]
    add(f"TokenBroker node mode: {r['mode']} mode, **{r['build']} build**, {mc.get('cores')} cores ({mc.get('cpu', '?')}), "
        f"kernel {mc.get('kernel', '?')}; {r['pods']} pods of {r['accounts']} service accounts, 2 projected tokens each "
        f"({FEDERATION_AUDIENCE} and {API_AUDIENCE}); churn {r['churnRate']:g} pods/s for {r['churnSeconds']:g} s.")
    add("")
    add("| what | figure | target | met |")
    add("|---|---|---|---|")

    def yes(ok):
        return "yes" if ok else "**no**"

    def churn_rows(c, b, label):
        cm = c["createdMs"]
        rate = c["pods"] / c["seconds"]
        add(f"| {label}new pod → first token answer, from the `..data` rename ({cm['n']} pods, polled every 1 ms) | "
            f"p50 {cm['p50']:.1f} ms, p99 {cm['p99']:.1f} ms, max {cm['max']:.1f} ms | p99 ≤ 100 ms | {yes(cm['p99'] <= 100)} |")
        for kind, how in (("active", "its process's connection, the request it had just made repeated every 5 ms"),
                          ("fresh", "a second connection, every 5 ms a request unlike the one before (`minValiditySeconds` changes)")):
            dm = c["deletedMs"][kind]
            sad = c["servedAfterDelete"][kind]
            add(f"| {label}deleted pod → `forbidden`, from the removal of its directory; {how} ({dm['n']} pods) | "
                f"p50 {dm['p50']:.0f} ms, p99 {dm['p99']:.0f} ms, max {dm['max']:.0f} ms; **{dm['over1s']} over 1 s**; "
                f"{sad['answers']} tokens answered after the removal (latest {sad['latestMs']:.0f} ms after) | every one ≤ 1 s | {yes(dm['over1s'] == 0)} |")
        add(f"| {label}broker CPU during the churn ({c['pods']} pods created and as many deleted in {c['seconds']:.1f} s: "
            f"{rate:.1f} pods/s; polls included) | {c['cpuPercentOfCore']:.1f} % of a core | | |")
        d, aft = c["during"], c["after"]
        add(f"| {label}file descriptors: before → max during → {c['settleSeconds']:g} s after (no client connection before or after) | "
            f"{b['fds']} → {d['fds']} → {aft['fds']} | back to baseline | {yes(aft['fds'] <= b['fds'])} |")
        add(f"| {label}inotify watches: before → max during → after | {b['watches']} → {d['watches']} → {aft['watches']} | back to baseline | "
            f"{yes(aft['watches'] <= b['watches'])} |")
        add(f"| {label}threads: before → max during → after | {b['threads']} → {d['threads']} → {aft['threads']} | back to baseline | "
            f"{yes(aft['threads'] <= b['threads'])} |")
        flat = aft["rss"] <= b["rss"] * 1.05 + 1 * MiB
        add(f"| {label}RSS: before → max during → after | {b['rss'] / MiB:.1f} → {d['rss'] / MiB:.1f} → {aft['rss'] / MiB:.1f} MiB | "
            f"back to baseline (≤ +5 % + 1 MiB) | {yes(flat)} |")

    c = r.get("churn")
    if c:
        churn_rows(c, r["beforeChurn"], "churn: ")
    bu = r.get("burst")
    if bu:
        add(f"| cold burst: one new scope from all {bu['requests']} pods at once, upstream +50 ms | **{bu['exchanges']} exchanges**; "
            f"{bu['errors']} errors; p50 {bu['p50Ms']:.0f} ms, last answer {bu['lastAnswerMs']:.0f} ms | exactly {r['accounts']} | "
            f"{yes(bu['exchanges'] == r['accounts'] and not bu['errors'])} |")
    w = r.get("withTokens")
    if w:
        f = r.get("fill", {})
        how = "one exchange at a time" if f.get("serial") else f"every account's {r['scopes'] - 1} other scopes asked at once, {f.get('seconds', 0):.1f} s"
        add(f"| RSS with {r['pods']} pods and {f.get('tokens', 0)} cached tokens ({r['accounts']} accounts × {r['scopes']} scopes; filled {how}; "
            f"{f.get('errors', 0)} errors) | {w['rss'] / MiB:.1f} MiB (anonymous {w['rssAnon'] / MiB:.1f}); "
            f"{w['fds']} fds, {w['watches']} inotify watches, {w['threads']} threads | ≤ 48 MiB | {yes(w['rss'] <= 48 * MiB)} |")
        for key, what in (("afterBurst", f"{r['pods']} pods after the cold burst: {r['accounts']} service accounts served, one token each "
                                         f"({r['pods']} client connections open)"),
                          ("withPods", f"{r['pods']} pods, no pod token cached yet"), ("empty", "no pod, no token")):
            e = r[key]
            add(f"| for comparison: RSS with {what} | {e['rss'] / MiB:.1f} MiB (anonymous {e['rssAnon'] / MiB:.1f}); "
                f"{e['fds']} fds, {e['watches']} inotify watches, {e['threads']} threads | | |")
    ic = r.get("idleCpu")
    if ic:
        add(f"| idle CPU with {r['pods']} pods ({ic['seconds']:.1f} s, utime+stime) | {ic['percentOfCore']:.2f} % of a core "
            f"({ic['cpuSeconds'] * 1e3:.0f} ms) | ≤ 1 % | {yes(ic['percentOfCore'] <= 1.0)} |")
    t = r.get("throughput")
    if t:
        pod_rps = [x["pod"]["rps"] for x in t]
        cfg_rps = [x["configured"]["rps"] for x in t]
        ratios = [p / c for p, c in zip(pod_rps, cfg_rps)]

        def cell(xs, key):
            return ", ".join(f"{x[key]['rps'] / 1000:.1f}k" for x in t)

        pod_cpu = statistics.median(x["pod"].get("cpuUsPerReq", float("nan")) for x in t)
        cfg_cpu = statistics.median(x["configured"].get("cpuUsPerReq", float("nan")) for x in t)
        pod_p99 = max(x["pod"]["p99us"] for x in t)
        cfg_p99 = max(x["configured"]["p99us"] for x in t)
        errors = sum(x["pod"].get("errors", 0) + x["configured"].get("errors", 0) for x in t)
        add(f"| cached answer, NDJSON, {args.conns} connections, {len(t)} alternating rounds of {args.duration:g} s (loadgen): "
            f"from a process in a pod vs outside it (configured identity) | pod {cell(t, 'pod')} req/s (p99 ≤ {pod_p99:.0f} µs, "
            f"{pod_cpu:.1f} µs CPU/req); configured {cell(t, 'configured')} req/s (p99 ≤ {cfg_p99:.0f} µs, {cfg_cpu:.1f} µs CPU/req); "
            f"pod / configured: {', '.join(f'{x:.2f}' for x in ratios)}, median **{statistics.median(ratios):.2f}**; {errors} errors | "
            f"(none set) | |")
    rs = r.get("rescan")
    if rs:
        add(f"| full rescan: broker CPU per change of the mount table ({rs['changes']} changes: a tmpfs mounted and unmounted outside "
            f"the pods directory, 100 ms apart) with {r['pods']} pods | {rs['msPerChange']:.1f} ms | | |")
    m = r.get("mountChurn")
    if m:
        churn_rows(m, c["after"], "churn + tmpfs: ")
    add("")
    if m:
        add("\"churn + tmpfs\": the same churn after the first, but each new pod's two projected volumes are tmpfs mounts, "
            "as the kubelet makes them (mounted before the AtomicWriter writes; unmounted before the pod's directory is removed); "
            "beyond the issue's scenario.")
    la, lb = r.get("loadavgStart"), r.get("loadavgEnd")
    if la and lb:
        add(f"Load average (1 min) at start {la[0]:.2f}, at end {lb[0]:.2f} (other work on this machine disturbs latencies and CPU figures). "
            f"Suite time {r.get('seconds', 0):.0f} s.")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--daemon", required=True)
    p.add_argument("--build-kind", required=True)
    p.add_argument("--tools", required=True, help="directory with the compiled loadgen")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json-out")
    p.add_argument("--pods", type=int, default=250)
    p.add_argument("--accounts", type=int, default=25)
    p.add_argument("--scopes", type=int, default=30)
    p.add_argument("--churn-rate", type=float, default=20.0)
    p.add_argument("--churn-seconds", type=float)
    p.add_argument("--mount-seconds", type=float, help="a second churn with a tmpfs per projected volume, as the kubelet mounts them (0: none)")
    p.add_argument("--conns", type=int, default=4)
    p.add_argument("--fill-serial", action="store_true", help="fill the cache one exchange at a time (default: every account's scopes at once)")
    p.add_argument("--profile", action="store_true", help="perf record the broker during the churn with mounts; report on stderr")
    args = p.parse_args()
    if args.churn_seconds is None:
        args.churn_seconds = 10.0 if args.quick else 60.0
    args.duration, args.warmup, args.rounds = (2.0, 0.5, 2) if args.quick else (5.0, 1.0, 3)
    if args.mount_seconds is None:
        args.mount_seconds = 5.0 if args.quick else 20.0
    args.settle = 3.0
    bench = NodeBench(args)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        results = bench.run()
    except KeyboardInterrupt:
        log("interrupted")
        bench.cleanup()
        return 130
    except BaseException:
        bench.cleanup()
        raise
    bench.cleanup()
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
