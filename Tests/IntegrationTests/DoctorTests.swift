import Foundation
import Testing

/// `tokenbroker doctor` run for real against a dev provider and broker: each failure it
/// reports is provoked by the real condition (a token with the wrong audience, an expired
/// file, a socket this user may not open, a key the issuer does not publish, a skewed clock).
@Suite("tokenbroker doctor")
struct DoctorTests {
    @Test("against tokenbrokerd --dev every check passes and the exit status is 0")
    func devModeAllPass() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = "\(directory)/state"
        let process = try ChildProcess(
            executable: TestEnvironment.daemonPath, arguments: ["--dev", "--state-dir", state], logDirectory: directory, name: "dev")
        do {
            try await waitUntil("the dev-mode banner") {
                guard process.isRunning else { throw HarnessError("tokenbrokerd --dev exited: \(process.stderr)") }
                return process.stdout.contains("Stop with Ctrl-C")
            }
            let endpoints = try JSONDecoder().decode(
                DevProvider.Endpoints.self, from: Data(contentsOf: URL(fileURLWithPath: "\(state)/provider/provider.json")))
            let run = try await DoctorRun.run(environment: DoctorRun.environment(endpoints, socket: "\(state)/broker.sock"))
            #expect(run.status == 0, "\(run.output)")
            #expect(run.statuses.values.allSatisfy { $0 == "PASS" }, "\(run.output)")
            for id in [
                "env.AZURE_CLIENT_ID", "token.audience", "token.rotation", "socket.access", "broker.identity.default", "clock.skew", "issuer.keys",
            ] {
                #expect(run.statuses[id] == "PASS", "\(id): \(run.output)")
            }
            #expect((run.json["counts"] as? [String: Int])?["fail"] == 0)
            // Claims are reported, the token itself never.
            let token = try String(contentsOfFile: endpoints.tokenFile, encoding: .utf8)
            #expect(!run.output.contains(token.split(separator: ".")[1]) && !run.output.contains(token.split(separator: ".")[2]))
        } catch {
            await process.stop()
            throw error
        }
        await process.stop()
    }

    @Test("a token with the wrong audience fails token.audience, and the broker's 700212 is explained")
    func wrongAudience() async throws {
        try await Scenario.run(identities: { directory, provider in
            let token = try await provider.mint(aud: ["api://SomethingElse"])
            return [.init(name: "wrongaud", tokenFile: try Scenario.writeTokenFile(token, in: directory, name: "wrongaud.jwt"))]
        }) { scenario in
            let refused = try await scenario.broker.request(#"{"op":"token","scope":"\#(Scenario.scope)","identity":"wrongaud"}"#)
            #expect(refused.upstreamCodes == [700212], "\(refused)")
            var environment = DoctorRun.environment(scenario.provider.endpoints, socket: scenario.broker.socketPath)
            environment["AZURE_FEDERATED_TOKEN_FILE"] = "\(scenario.directory)/wrongaud.jwt"
            let run = try await DoctorRun.run(environment: environment)
            #expect(run.status == 1, "\(run.output)")
            #expect(run.statuses["token.audience"] == "FAIL", "\(run.output)")
            #expect(
                run.finding("token.audience")?["evidence"] as? String
                    == "aud=api://SomethingElse; the federated credential expects api://AzureADTokenExchange (AADSTS700212 otherwise)")
            let broker = try #require(run.finding("broker.identity.wrongaud"), "\(run.output)")
            #expect(broker["status"] as? String == "FAIL")
            #expect((broker["evidence"] as? String)?.hasPrefix("last error AADSTS700212 (audience mismatch") == true, "\(broker)")
            #expect((broker["fix"] as? String)?.contains("api://AzureADTokenExchange") == true, "\(broker)")
            #expect(run.statuses["broker.identity.default"] == "PASS", "\(run.output)")
        }
    }

    @Test("an expired token file fails token.lifetime with AADSTS700024 named")
    func expiredFile() async throws {
        try await Scenario.run { scenario in
            let token = try await scenario.provider.mint(ttlSeconds: 600, issuedAtOffsetSeconds: -3600)
            var environment = DoctorRun.environment(scenario.provider.endpoints, socket: scenario.broker.socketPath)
            environment["AZURE_FEDERATED_TOKEN_FILE"] = try Scenario.writeTokenFile(token, in: scenario.directory, name: "expired.jwt")
            let run = try await DoctorRun.run(environment: environment)
            #expect(run.status == 1)
            #expect(run.statuses["token.lifetime"] == "FAIL", "\(run.output)")
            let lifetime = run.finding("token.lifetime")?["evidence"] as? String ?? ""
            #expect(lifetime.hasPrefix("expired 50m") && lifetime.hasSuffix("Entra answers AADSTS700024"), "\(run.output)")
            // Plain file, nobody rewrites it: a warning on top of the failure.
            #expect(run.statuses["token.rotation"] == "WARN", "\(run.output)")
            // The text form says the same, one line of evidence and one of fix.
            let text = try await DoctorRun.run(environment: environment, output: "text")
            #expect(text.status == 1)
            #expect(text.output.contains("FAIL  token.lifetime") && text.output.contains("fix: the file is stale"), "\(text.output)")
        }
    }

    @Test("a socket of mode 0600 owned by root fails socket.access for user nobody")
    func unreadableSocket() async throws {
        try await Scenario.run { scenario in
            try #require(chmod(scenario.directory, 0o755) == 0 && chmod(scenario.broker.socketPath, 0o600) == 0)
            // Only the socket: every other check is skipped, so the exit status is the socket's.
            let environment = ["PATH": "/usr/bin:/bin", "TOKENBROKER_SOCKET": scenario.broker.socketPath]
            let run = try await DoctorRun.run(environment: environment, arguments: ["--offline"], asUser: 65534)
            #expect(run.status == 1, "\(run.output)")
            #expect(run.statuses["socket.exists"] == "PASS", "\(run.output)")
            let access = try #require(run.finding("socket.access"), "\(run.output)")
            #expect(access["status"] as? String == "FAIL")
            #expect(
                (access["evidence"] as? String)?.contains("uid 65534") == true
                    && (access["evidence"] as? String)?.contains("srw------- root:root") == true, "\(access)")
            #expect(run.statuses["broker.status"] == "SKIP", "\(run.output)")
            // Root, the socket's owner, may connect.
            let asRoot = try await DoctorRun.run(environment: environment, arguments: ["--offline"])
            #expect(asRoot.statuses["socket.access"] == "PASS", "\(asRoot.output)")
        }
    }

    @Test("a token whose kid the issuer does not publish fails issuer.keys")
    func unknownKeyId() async throws {
        try await Scenario.run { scenario in
            let token = try await scenario.provider.mint(foreignKey: true)
            var environment = DoctorRun.environment(scenario.provider.endpoints, socket: scenario.broker.socketPath)
            environment["AZURE_FEDERATED_TOKEN_FILE"] = try Scenario.writeTokenFile(token, in: scenario.directory, name: "foreign.jwt")
            let run = try await DoctorRun.run(environment: environment)
            #expect(run.status == 1)
            #expect(run.statuses["issuer.discovery"] == "PASS", "\(run.output)")
            #expect(run.statuses["issuer.keys"] == "FAIL", "\(run.output)")
            #expect((run.finding("issuer.keys")?["evidence"] as? String)?.contains("is not among the 1 key(s)") == true, "\(run.output)")
            #expect(run.statuses["token.audience"] == "PASS")
        }
    }

    @Test("a clock 10 minutes ahead (libfaketime) fails clock.skew", .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/faketime")))
    func skewedClock() async throws {
        try await Scenario.run { scenario in
            var environment = DoctorRun.environment(scenario.provider.endpoints, socket: scenario.broker.socketPath)
            // Only the wall clock moves; NIO's timers keep the real monotonic clock.
            environment["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
            let run = try await DoctorRun.run(environment: environment, wrapper: ["/usr/bin/faketime", "-f", "+10m"])
            #expect(run.status == 1, "\(run.output)")
            let skew = try #require(run.finding("clock.skew"), "\(run.output)")
            #expect(skew["status"] as? String == "FAIL", "\(skew)")
            #expect((skew["evidence"] as? String)?.contains("ahead of") == true, "\(skew)")
            // The same run without faketime agrees with the provider's clock.
            let real = try await DoctorRun.run(environment: environment)
            #expect(real.statuses["clock.skew"] == "PASS", "\(real.output)")
        }
    }
}

/// One `tokenbroker doctor` process and its parsed answer.
struct DoctorRun: @unchecked Sendable {
    let status: Int32
    let output: String
    let json: [String: Any]

    /// `id` → `PASS`/`WARN`/`FAIL`/`SKIP`.
    var statuses: [String: String] {
        Dictionary(
            (json["checks"] as? [[String: Any]] ?? []).map { ($0["id"] as? String ?? "", $0["status"] as? String ?? "") },
            uniquingKeysWith: { a, _ in a })
    }

    func finding(_ id: String) -> [String: Any]? {
        (json["checks"] as? [[String: Any]])?.first { $0["id"] as? String == id }
    }

    /// The variables the webhook would inject for the provider's identity, plus the socket and the provider's CA.
    static func environment(_ endpoints: DevProvider.Endpoints, socket: String) -> [String: String] {
        [
            "PATH": "/usr/bin:/bin",
            "AZURE_CLIENT_ID": endpoints.clientId, "AZURE_TENANT_ID": endpoints.tenantId,
            "AZURE_FEDERATED_TOKEN_FILE": endpoints.tokenFile, "AZURE_AUTHORITY_HOST": endpoints.authorityHost,
            "TOKENBROKER_SOCKET": socket, "SSL_CERT_FILE": endpoints.caFile,
        ]
    }

    static func run(
        environment: [String: String], arguments: [String] = [], output: String = "json", asUser uid: UInt32? = nil, wrapper: [String] = []
    ) async throws -> DoctorRun {
        var argv = wrapper + [TestEnvironment.cliPath, "doctor", "--output", output] + arguments
        if let uid { argv = ["/usr/bin/setpriv", "--reuid", "\(uid)", "--regid", "\(uid)", "--clear-groups"] + argv }
        let result = try await runCommand(argv[0], Array(argv.dropFirst()), environment: environment)
        let json = output == "json" ? (try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:] : [:]
        if output == "json" && json.isEmpty { throw HarnessError("doctor printed no JSON (\(result.status)): \(result.stdout) \(result.stderr)") }
        return DoctorRun(status: result.status, output: result.stdout + result.stderr, json: json)
    }
}
