import Foundation
import Testing

/// Node mode on a simulated node: real cgroups, real processes, pod directories written as
/// the kubelet writes them, the real daemon. Every pod gets tokens obtained with its own
/// projected token, and nothing else.
@Suite("Node mode", .serialized, .enabled(if: CgroupSandbox.isAvailable, "needs a writable cgroup v2 mount (root)"))
struct NodeModeTests {
    static let appA = "0a11ce00-0000-4000-8000-00000000aaaa"
    static let appB = "0a11ce00-0000-4000-8000-00000000bbbb"
    static let appReplicas = "0a11ce00-0000-4000-8000-00000000cccc"
    static let accountA = (namespace: "team-a", name: "api")
    static let accountB = (namespace: "team-b", name: "web")
    static let accountReplicas = (namespace: "team-r", name: "worker")
    /// Pods run as a uid of their own (pods of one uid are told apart by pod UID).
    static let podUID: UInt32 = 4301

    static func subject(_ account: (namespace: String, name: String)) -> String { "system:serviceaccount:\(account.namespace):\(account.name)" }

    /// A provider whose apps each trust one service account, a node, and a broker in node mode.
    /// `serviceAccountKeys`: the YAML of `kubernetes.serviceAccountKeys`, given the file the
    /// provider's issuer keys were written to (by default that file).
    static func run(
        limits: String = "{}",
        environment: [String: String]? = nil,
        serviceAccountKeys: (_ jwksFile: String) async throws -> String = { $0 },
        _ body: (_ node: SimulatedNode, _ provider: DevProvider, _ broker: BrokerDaemon, _ directory: String) async throws -> Void
    ) async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try SimulatedNode(directory: directory)
        defer { node.remove() }
        let provider = try await DevProvider(
            directory: directory, apps: [appA: subject(accountA), appB: subject(accountB), appReplicas: subject(accountReplicas)])
        do {
            let keys = directory + "/service-account-keys.json"
            try await provider.writeIssuerKeys(to: keys)
            let keysYAML = try await serviceAccountKeys(keys)
            let broker = try await BrokerDaemon(
                directory: directory, provider: provider, identities: [.init(name: "default", tokenFile: provider.endpoints.tokenFile)],
                extraYAML: """
                    limits: \(limits)
                    kubernetes: { serviceAccountKeys: \(keysYAML), podsDirectory: \(node.podsDirectory), tenantId: "\(provider.endpoints.tenantId)", authorityHost: "\(provider.endpoints.authorityHost)", callerEnvironment: true, forgetAfterSeconds: 1 }
                    """, environment: environment)
            chmod(directory, 0o755)
            chmod(broker.socketPath, 0o666)
            do {
                try await body(node, provider, broker, directory)
            } catch {
                _ = await broker.stop()
                throw error
            }
            _ = await broker.stop()
        } catch {
            await provider.stop()
            throw error
        }
        await provider.stop()
    }

    /// A pod of `account` with its projected token (and the default API token beside it).
    static func startPod(
        _ node: SimulatedNode, _ provider: DevProvider, account: (namespace: String, name: String), driver: SimulatedNode.Driver = .systemd
    ) async throws -> SimulatedNode.Pod {
        let pod = try node.addPod(driver: driver)
        let token = try await provider.mint(namespace: account.namespace, serviceAccount: account.name, podUID: pod.uid)
        let apiToken = try await provider.mint(
            aud: ["https://kubernetes.default.svc"], namespace: account.namespace, serviceAccount: account.name, podUID: pod.uid)
        try node.project(["azure-identity-token": token], into: pod, volume: "azure-identity-token")
        try node.project(["token": apiToken, "namespace": account.namespace], into: pod, volume: "kube-api-access-x7k2p")
        return pod
    }

    /// `GET /v1/token` from a process in `pod` (its cgroup), with `environment` as the
    /// webhook would set it.
    static func token(
        _ broker: BrokerDaemon, from pod: SimulatedNode.Pod, clientId: String? = nil, environment: [String: String] = [:], query: String = ""
    ) async throws -> Reply {
        let variables = environment.map { "\($0.key)=\($0.value)" }.sorted()
        let path = "/v1/token?scope=\(Scenario.scope)" + (clientId.map { "&clientId=\($0)" } ?? "") + query
        let result = try await OtherUser.run(
            ["/usr/bin/env"] + variables + [
                "/usr/bin/curl", "-s", "--max-time", "30", "--unix-socket", broker.socketPath, "http://localhost\(path)",
            ],
            uid: podUID, gid: podUID, groups: nil, cgroup: pod.cgroup)
        guard result.status == 0 else { throw HarnessError("curl in pod \(pod.uid) failed (\(result.status)): \(result.stderr)") }
        return try Reply(result.stdout)
    }

    @Test(
        "each pod gets a token with its own projected token, whichever cgroup driver; naming another pod's app, identity or a forged token gets nothing"
    )
    func podsGetTheirOwnTokens() async throws {
        try await Self.run { node, provider, broker, _ in
            let podA = try await Self.startPod(node, provider, account: Self.accountA, driver: .systemd)
            let podB = try await Self.startPod(node, provider, account: Self.accountB, driver: .cgroupfs)
            let envA = ["AZURE_CLIENT_ID": Self.appA]
            let envB = ["AZURE_CLIENT_ID": Self.appB]

            let a = try await Self.token(broker, from: podA, environment: envA)
            #expect(a.ok, "pod A, its app from its environment: \(a)")
            #expect(a["serviceAccount"] as? String == "team-a/api" && a["clientId"] as? String == Self.appA, "\(a)")
            let b = try await Self.token(broker, from: podB, clientId: Self.appB)
            #expect(b.ok, "pod B (cgroupfs driver), its app named in the request: \(b)")
            #expect(b["serviceAccount"] as? String == "team-b/web")
            #expect(a.token != b.token)

            // Pod A asks for pod B's app: the token service refuses A's assertion for it.
            let cross = try await Self.token(broker, from: podA, clientId: Self.appB, environment: envA)
            #expect(!cross.ok && cross.token == nil, "\(cross)")
            #expect(cross.errorCode == "upstream_rejected" && cross.errorMessage.contains("700213"), "Entra's reason reaches the caller: \(cross)")
            // A client id that is no Entra app's, and more distinct ones than an account may
            // use: refused before any exchange (each would be a cache identity kept for the pod).
            let notGUID = try await Self.token(broker, from: podA, clientId: "x")
            #expect(notGUID.errorCode == "bad_request" && notGUID.errorMessage.contains("(a GUID)"), "\(notGUID)")
            var refusal: Reply?
            for index in 0..<40 where refusal == nil {
                let reply = try await Self.token(broker, from: podA, clientId: String(format: "0a11ce00-0000-4000-8000-%012x", 0xf000 + index))
                if reply.errorMessage.contains("distinct exchanges") { refusal = reply }
            }
            #expect(refusal?.errorCode == "bad_request", "the 33rd client id is refused: \(String(describing: refusal))")
            let wrongEnvironment = try await Self.token(broker, from: podA, environment: envB)
            #expect(wrongEnvironment.errorCode == "upstream_rejected", "a wrong AZURE_CLIENT_ID surfaces Entra's error: \(wrongEnvironment)")
            // Naming an identity is the configured identities' business: root only here.
            let named = try await Self.token(broker, from: podA, environment: envA, query: "&identity=default")
            #expect(named.errorCode == "forbidden", "\(named)")

            // A pod writes a valid token of B (signed by the issuer, bound to B's pod) into
            // its own emptyDir, and into nothing else it can write: it is never read.
            let forger = try node.addPod()
            let stolen = try await provider.mint(namespace: Self.accountB.namespace, serviceAccount: Self.accountB.name, podUID: podB.uid)
            try node.writeEmptyDir(["token": stolen], into: forger, volume: "cache")
            let forged = try await Self.token(broker, from: forger, environment: envB)
            #expect(!forged.ok && forged.token == nil, "\(forged)")
            #expect(forged.errorCode == "assertion_unavailable", "\(forged)")
            // Claims of B bound to the forger's own pod, in a projected volume of its own (a
            // configMap can put any file there) but not signed by the cluster: ignored.
            let claimed = try await provider.mint(namespace: Self.accountB.namespace, serviceAccount: Self.accountB.name, podUID: forger.uid)
            let parts = claimed.split(separator: ".")
            let unsigned = "\(parts[0]).\(parts[1]).\(String(parts[2].reversed()))"
            try node.project(["from-configmap": unsigned], into: forger, volume: "wi")
            try await Task.sleep(for: .milliseconds(300))
            let claimedB = try await Self.token(broker, from: forger, environment: envB)
            #expect(claimedB.errorCode == "assertion_unavailable" && claimedB.token == nil, "an unsigned file claims B: \(claimedB)")
            // A projected token bound to another pod's UID does not count either.
            let mismatched = try node.addPod()
            try node.project(["azure-identity-token": stolen], into: mismatched, volume: "azure-identity-token")
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await Self.token(broker, from: mismatched, environment: envB).token == nil)

            // status shows the caller its own pod and nothing of others.
            let status = try await OtherUser.run(
                ["/usr/bin/curl", "-s", "--unix-socket", broker.socketPath, "http://localhost/v1/status"], uid: Self.podUID, gid: Self.podUID,
                groups: nil, cgroup: podA.cgroup)
            let pod = ((try Reply(status.stdout))["status"] as? [String: Any])?["pod"] as? [String: Any]
            #expect(pod?["uid"] as? String == podA.uid && pod?["serviceAccounts"] as? [String] == ["team-a/api"], "\(status.stdout)")
            #expect(
                pod?["tokens"] as? [String] == ["azure-identity-token/azure-identity-token"], "the API server's token is not listed: \(status.stdout)"
            )

            let stats = try await provider.stats()
            #expect(
                !stats.requests.contains { $0.assertionSubject == Self.subject(Self.accountB) && $0.clientId != Self.appB },
                "B's assertion was only ever sent for B's app")
        }
    }

    @Test("one pod cannot take every connection: beyond limits.maxConnectionsPerPod its own are closed, another pod of the same uid is served")
    func connectionsPerPod() async throws {
        try await Self.run(limits: "{ maxConnectionsPerPod: 4 }") { node, provider, broker, directory in
            let podA = try await Self.startPod(node, provider, account: Self.accountA)
            let podB = try await Self.startPod(node, provider, account: Self.accountB)
            // Pod A opens six connections and holds them: four are answered, two closed at once.
            let script = """
                import socket, sys
                held, closed = [], 0
                for _ in range(6):
                    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(10)
                    try:
                        s.sendall(b'{"op":"ping"}\\n')
                        answer = s.recv(100)
                    except OSError:  # closed at accept: EOF or a reset
                        answer = b""
                    if answer: held.append(s)
                    else: closed += 1
                print(f"held {len(held)} closed {closed}", flush=True)
                sys.stdin.read()
                """
            let holder = try ChildProcess(
                executable: "/bin/sh",
                arguments: [
                    "-c", #"echo $$ > "$0/cgroup.procs" && exec "$@""#, podA.cgroup, "/usr/bin/setpriv", "--reuid", "\(Self.podUID)", "--regid",
                    "\(Self.podUID)", "--clear-groups", TestEnvironment.python, "-c", script, broker.socketPath,
                ], logDirectory: directory, name: "holder")
            do {
                try await waitUntil(timeout: .seconds(20), "pod A's connections") {
                    guard holder.isRunning || holder.stdout.contains("held") else {
                        let stderr = (try? String(contentsOfFile: holder.stderrPath, encoding: .utf8)) ?? ""
                        throw HarnessError("the holder exited: \(stderr.replacingOccurrences(of: "\n", with: " | "))")
                    }
                    return holder.stdout.contains("held")
                }
                #expect(holder.stdout.contains("held 4 closed 2"), "\(holder.stdout)")
                let b = try await Self.token(broker, from: podB, clientId: Self.appB)
                #expect(b.ok, "pod B, same uid, is served while pod A holds its limit: \(b)")
            } catch {
                _ = await holder.stop()
                throw error
            }
            _ = await holder.stop()
        }
    }

    @Test("a pod created after the broker started is served at once; a deleted pod's process is refused; 40 replicas cost one exchange")
    func podsComeAndGo() async throws {
        try await Self.run { node, provider, broker, directory in
            let environment = ["AZURE_CLIENT_ID": Self.appReplicas]
            var replicas: [SimulatedNode.Pod] = []
            for _ in 0..<40 { replicas.append(try await Self.startPod(node, provider, account: Self.accountReplicas)) }
            try await Task.sleep(for: .milliseconds(300))
            let replies = try await withThrowingTaskGroup(of: Reply.self) { group in
                for pod in replicas { group.addTask { try await Self.token(broker, from: pod, environment: environment) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(replies.allSatisfy { $0.ok }, "\(replies.filter { !$0.ok }.prefix(3))")
            #expect(Set(replies.compactMap(\.token)).count == 1, "one token for the service account")
            #expect(try await provider.stats().requests.filter { $0.clientId == Self.appReplicas }.count == 1, "40 replicas, one exchange")

            // A new pod: served without a restart, within moments of the kubelet's write.
            let late = try await Self.startPod(node, provider, account: Self.accountA)
            let deadline = ContinuousClock.now + .seconds(5)
            var reply = try await Self.token(broker, from: late, environment: ["AZURE_CLIENT_ID": Self.appA])
            while !reply.ok, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                reply = try await Self.token(broker, from: late, environment: ["AZURE_CLIENT_ID": Self.appA])
            }
            #expect(reply.ok, "\(reply)")

            // As on a node: the volume's tmpfs is mounted after its directory was made (and
            // watched); what is written into the tmpfs is found through the mount table.
            let mounted = try node.addPod()
            let token = try await provider.mint(namespace: Self.accountA.namespace, serviceAccount: Self.accountA.name, podUID: mounted.uid)
            try node.projectOnTmpfs(["azure-identity-token": token], into: mounted, volume: "azure-identity-token")
            var onTmpfs = try await Self.token(broker, from: mounted, environment: ["AZURE_CLIENT_ID": Self.appA])
            let tmpfsDeadline = ContinuousClock.now + .seconds(5)
            while !onTmpfs.ok, ContinuousClock.now < tmpfsDeadline {
                try await Task.sleep(for: .milliseconds(50))
                onTmpfs = try await Self.token(broker, from: mounted, environment: ["AZURE_CLIENT_ID": Self.appA])
            }
            #expect(onTmpfs.ok, "a token written into a tmpfs mounted over the volume directory: \(onTmpfs)")

            // Deleted: its processes are refused from then on.
            try node.deletePod(late)
            try await Task.sleep(for: .milliseconds(500))
            let gone = try await Self.token(broker, from: late, environment: ["AZURE_CLIENT_ID": Self.appA])
            #expect(gone.errorCode == "forbidden" && gone.errorMessage.contains("not on this node"), "\(gone)")

            // A connection that keeps asking the same thing (answered from its memory of the
            // last answer) is refused at its first request after the pod is gone, too.
            let keeper = try await Self.startPod(node, provider, account: Self.accountA)
            // Served first (on a loaded machine the watcher may not have read its volume yet).
            let keeperDeadline = ContinuousClock.now + .seconds(10)
            while !(try await Self.token(broker, from: keeper, environment: ["AZURE_CLIENT_ID": Self.appA])).ok, ContinuousClock.now < keeperDeadline
            {
                try await Task.sleep(for: .milliseconds(50))
            }
            let marker = "\(directory)/deleted-\(keeper.uid)"
            let script = """
                import json, os, socket, sys, time
                s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
                f = s.makefile("rwb"); start = time.time(); deleted = None
                while time.time() - start < 20:
                    f.write(b'{"op":"token","scope":"https://storage.azure.com/.default","id":1}\\n'); f.flush()
                    reply = json.loads(f.readline())
                    if deleted is None and os.path.exists(sys.argv[2]): deleted = time.time()
                    if not reply.get("ok"):
                        print(json.dumps({"code": reply["error"]["code"], "afterDeletion": None if deleted is None else time.time() - deleted})); sys.exit(0)
                    time.sleep(0.01)
                print(json.dumps({"code": None}))
                """
            async let asker = OtherUser.run(
                ["/usr/bin/env", "AZURE_CLIENT_ID=\(Self.appA)", "/usr/bin/python3", "-c", script, broker.socketPath, marker],
                uid: Self.podUID, gid: Self.podUID, groups: nil, cgroup: keeper.cgroup)
            try await Task.sleep(for: .milliseconds(500))
            try node.deletePod(keeper)
            _ = FileManager.default.createFile(atPath: marker, contents: nil)
            let outcome = try await asker
            let refusal = try Reply(outcome.stdout)
            #expect(refusal["code"] as? String == "forbidden", "\(outcome.stdout) \(outcome.stderr)")
            #expect(
                (refusal["afterDeletion"] as? Double ?? 99) < 0.5,
                "refused at once after the deletion, not when the remembered answer runs out: \(outcome.stdout)")

            let metrics = try await runCommand("/usr/bin/curl", ["-s", "--unix-socket", broker.socketPath, "http://localhost/metrics"])
            #expect(
                metrics.stdout.contains("tokenbroker_kubernetes_pods 41"),
                "\(metrics.stdout.split(separator: "\n").filter { $0.contains("kubernetes") })")
            #expect(metrics.stdout.contains(#"serviceaccount="worker""#))
        }
    }

    @Test(
        "serviceAccountKeys from the in-cluster API server: fetched over TLS checked against caFile, with the broker's bearer token; a key the cluster rotated in is fetched when a pod's token names it"
    )
    func keysFromTheAPIServer() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await KubeAPIServerStandIn.with(directory: directory) { apiServer in
            var issuerKeys = ""
            // Where Kubernetes says the API server is, in every container's environment.
            var environment = ProcessInfo.processInfo.environment
            environment["KUBERNETES_SERVICE_HOST"] = "127.0.0.1"
            environment["KUBERNETES_SERVICE_PORT"] = String(apiServer.port)
            try await Self.run(
                environment: environment,
                serviceAccountKeys: { jwksFile in
                    // The cluster before its key rotation: the API server serves its keys under another kid.
                    issuerKeys = try String(contentsOfFile: jwksFile, encoding: .utf8)
                    var document = try #require(try JSONSerialization.jsonObject(with: Data(issuerKeys.utf8)) as? [String: Any])
                    document["keys"] = (document["keys"] as? [[String: Any]] ?? []).map { key in
                        key.merging(["kid": "retired-\(key["kid"] as? String ?? "")"]) { $1 }
                    }
                    try JSONSerialization.data(withJSONObject: document).write(to: URL(fileURLWithPath: apiServer.jwksFile))
                    return "{ apiServer: in-cluster, caFile: \(apiServer.caFile), tokenFile: \(apiServer.bearerFile) }"
                }
            ) { node, provider, broker, _ in
                let atStart = apiServer.requests()
                #expect(
                    atStart.count == 1 && atStart.allSatisfy { $0["authorized"] as? Bool == true },
                    "fetched once at start, with the bearer token: \(atStart)")

                // The cluster rotates: pods' tokens name the new key, which the API server now serves.
                try issuerKeys.write(toFile: apiServer.jwksFile, atomically: true, encoding: .utf8)
                let pod = try await Self.startPod(node, provider, account: Self.accountA)
                let deadline = ContinuousClock.now + .seconds(10)
                var reply = try await Self.token(broker, from: pod, environment: ["AZURE_CLIENT_ID": Self.appA])
                while !reply.ok, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                    reply = try await Self.token(broker, from: pod, environment: ["AZURE_CLIENT_ID": Self.appA])
                }
                #expect(reply.ok && reply["serviceAccount"] as? String == "team-a/api", "\(reply)")
                #expect(apiServer.requests().count == 2, "fetched again for the unknown kid, once: \(apiServer.requests())")
                #expect(broker.process.stderr.contains("loaded kubernetes.serviceAccountKeys again"), "\(broker.process.stderr)")
                #expect(!broker.process.stderr.contains(apiServer.bearer), "the broker's own token is never logged")
            }
        }
    }
}
