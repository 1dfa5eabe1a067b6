import Foundation
import Testing

/// What a new user meets on a first run: each message says what is wrong and what
/// to do, and nothing a second attempt does breaks the first.
@Suite("First run")
struct FirstRunTests {
    @Test("a second dev broker on the same state directory says so and touches nothing of the first")
    func devStateDirectoryIsLocked() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = "\(directory)/state"
        let first = try ChildProcess(
            executable: TestEnvironment.daemonPath, arguments: ["--dev", "--state-dir", state], logDirectory: directory, name: "first")
        do {
            try await waitUntil("the first dev broker's banner") {
                guard first.isRunning else { throw HarnessError("the first dev broker exited: \(first.stderr)") }
                return first.stdout.contains("Stop with Ctrl-C")
            }
            let tokenFile = try #require(first.stdout.split(separator: "\n").first { $0.contains("service-account token:") })
                .split(separator: "service-account token: ").last.map { String($0.dropLast()) }
            let path = try #require(tokenFile)
            let before = try String(contentsOfFile: path, encoding: .utf8)

            let second = try await runCommand(TestEnvironment.daemonPath, ["--dev", "--state-dir", state])
            #expect(second.status != 0)
            #expect(
                second.stderr.contains("another tokenbrokerd --dev (pid \(first.process.processIdentifier)) is using \(state)"), "\(second.stderr)")
            #expect(try String(contentsOfFile: path, encoding: .utf8) == before, "the second broker rewrote the first one's token file")

            // The first still exchanges: its issuer's token is the one in the file.
            let got = try await runCommand(
                TestEnvironment.cliPath, ["get", "--socket", "\(state)/broker.sock", "--scope", "https://storage.azure.com/.default"])
            #expect(got.status == 0, "\(got.stderr)")
        } catch {
            await first.stop()
            throw error
        }
        await first.stop()
    }

    @Test("--state-dir on a directory the user just made (0755) is tightened and used; a group-writable one is refused with the fix")
    func stateDirectoryModes() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let made = "\(directory)/made"
        #expect(mkdir(made, 0o755) == 0 && chmod(made, 0o755) == 0)
        let broker = try ChildProcess(
            executable: TestEnvironment.daemonPath, arguments: ["--dev", "--state-dir", made], logDirectory: directory, name: "made")
        do {
            try await waitUntil("the dev broker's banner") {
                guard broker.isRunning else { throw HarnessError("the dev broker exited: \(broker.stderr)") }
                return broker.stdout.contains("Stop with Ctrl-C")
            }
            var info = stat()
            #expect(stat(made, &info) == 0 && info.st_mode & 0o777 == 0o700)
        } catch {
            await broker.stop()
            throw error
        }
        await broker.stop()

        let shared = "\(directory)/shared"
        #expect(mkdir(shared, 0o775) == 0 && chmod(shared, 0o775) == 0)
        let refused = try await runCommand(TestEnvironment.daemonPath, ["--dev", "--state-dir", shared])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("writable by group or others") && refused.stderr.contains("chmod 700 \(shared)"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "\(shared)/provider"), "a refused directory was written to")
    }

    @Test("a broker with no identities warns at start, and its refusal says there are none")
    func noIdentitiesIsLoud() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = "\(directory)/config.yaml"
        try Data("socket: { path: \(directory)/broker.sock }\n".utf8).write(to: URL(fileURLWithPath: config))
        let broker = try ChildProcess(
            executable: TestEnvironment.daemonPath, arguments: ["--config", config], logDirectory: directory, name: "empty")
        do {
            try await waitUntil("the socket") { FileManager.default.fileExists(atPath: "\(directory)/broker.sock") }
            #expect(broker.stderr.contains("no identities are configured"), "\(broker.stderr)")
            let got = try await runCommand(
                TestEnvironment.cliPath, ["get", "--socket", "\(directory)/broker.sock", "--scope", "https://storage.azure.com/.default"])
            #expect(got.status == 1)
            #expect(got.stderr.contains("no identities are configured"), "\(got.stderr)")
        } catch {
            await broker.stop()
            throw error
        }
        await broker.stop()
    }

    @Test("both binaries report their version: VERSION and the commit, or what the build was given")
    func versions() async throws {
        let base = try String(contentsOfFile: "\(TestEnvironment.packageRoot)/VERSION", encoding: .utf8).trimmingCharacters(
            in: .whitespacesAndNewlines)
        for binary in [TestEnvironment.daemonPath, TestEnvironment.cliPath] {
            let result = try await runCommand(binary, ["--version"])
            let version = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(result.status == 0)
            // A package build sets TOKENBROKER_VERSION, which need not start with VERSION.
            let given = ProcessInfo.processInfo.environment["TOKENBROKER_VERSION"]
            #expect(version.hasPrefix(given ?? base) && !version.contains("unknown"), "\(binary): \(version)")
        }
    }

    @Test("`tokenbroker get` without --scope is a usage error that names the flag")
    func getWithoutScope() async throws {
        let got = try await runCommand(TestEnvironment.cliPath, ["get", "--socket", "/nonexistent/broker.sock"])
        #expect(got.status == 64)
        #expect(got.stderr.contains("--scope is required"), "\(got.stderr)")
    }

    @Test("`tokenbrokerd --log-format` takes its values from one table: --help lists them, another is a usage error naming them")
    func daemonLogFormatValues() async throws {
        let refused = try await runCommand(TestEnvironment.daemonPath, ["--log-format", "xml", "--check-config"])
        #expect(refused.status == 64)
        #expect(refused.stderr.contains("'xml' is not a value of --log-format; use one of auto, text, json, journal"), "\(refused.stderr)")
        let help = try await runCommand(TestEnvironment.daemonPath, ["run", "--help"])
        let words = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")  // help wraps lines
        #expect(words.contains("(values: auto, text, json, journal; default: auto)"), "\(help.stdout)")
    }

    @Test("node mode does not start without a usable file of the cluster's keys, and says which and why")
    func nodeModeNeedsServiceAccountKeys() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let keys = "\(directory)/jwks.json"
        for (contents, reason) in [(nil, "cannot read \(keys)"), ("{\"keys\":[]}", "\(keys) holds no RSA signing key")] as [(String?, String)] {
            if let contents { try contents.write(toFile: keys, atomically: true, encoding: .utf8) }
            let config = "\(directory)/config.yaml"
            try """
            socket: { path: \(directory)/broker.sock }
            kubernetes: { serviceAccountKeys: \(keys), podsDirectory: \(directory) }
            """.write(toFile: config, atomically: true, encoding: .utf8)
            let result = try await runCommand(TestEnvironment.daemonPath, ["--config", config, "--log-format", "text"])
            #expect(result.status == 78, "EX_CONFIG, as for any invalid configuration: \(result.stderr)")
            #expect(result.stderr.contains("kubernetes.serviceAccountKeys") && result.stderr.contains(reason), "\(result.stderr)")
        }
    }

    @Test(
        "node mode with the API server's keys does not start when it refuses the broker's token, its certificate is not caFile's, or it holds no key; it says which and why, never the token"
    )
    func nodeModeNeedsTheAPIServersKeys() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await KubeAPIServerStandIn.with(directory: directory) { apiServer in
            let wrongToken = "\(directory)/wrong-token"
            try "someone-else's-token-\(UUID().uuidString)".write(toFile: wrongToken, atomically: true, encoding: .utf8)
            let jwks = "\(apiServer.url)/openid/v1/jwks"
            let cases: [(caFile: String, tokenFile: String, reason: String)] = [
                (apiServer.caFile, wrongToken, "\(jwks) answered HTTP 401 (the API server did not accept the token in tokenFile)"),
                (
                    apiServer.otherCAFile, apiServer.bearerFile,
                    "cannot fetch \(jwks): TLS certificate verify failed for 127.0.0.1:\(apiServer.port): the server's certificate does not chain to a trusted CA (trusted: \(apiServer.otherCAFile) only)"
                ),
                (apiServer.caFile, "\(directory)/no-such-token", "cannot read the broker's service-account token \(directory)/no-such-token"),
                (apiServer.caFile, apiServer.bearerFile, "\(jwks) holds no RSA signing key"),
            ]
            for (caFile, tokenFile, reason) in cases {
                let config = "\(directory)/config.yaml"
                try """
                socket: { path: \(directory)/broker.sock }
                kubernetes: { serviceAccountKeys: { apiServer: "\(apiServer.url)", caFile: \(caFile), tokenFile: \(tokenFile) }, podsDirectory: \(directory) }
                """.write(toFile: config, atomically: true, encoding: .utf8)
                let result = try await runCommand(TestEnvironment.daemonPath, ["--config", config, "--log-format", "text"])
                #expect(result.status == 78, "\(reason): \(result.stderr)")
                #expect(result.stderr.contains("kubernetes.serviceAccountKeys") && result.stderr.contains(reason), "\(result.stderr)")
                #expect(
                    !result.stderr.contains(apiServer.bearer) && !result.stderr.contains("someone-else"), "no token in messages: \(result.stderr)")
            }
            #expect(apiServer.requests().count == 2, "the refused token and the empty key set reached it; the other CA's and no token did not")

            // in-cluster, outside a cluster: where the API server is, is not known.
            let config = "\(directory)/config.yaml"
            try """
            socket: { path: \(directory)/broker.sock }
            kubernetes: { serviceAccountKeys: { apiServer: in-cluster }, podsDirectory: \(directory) }
            """.write(toFile: config, atomically: true, encoding: .utf8)
            var environment = ProcessInfo.processInfo.environment
            environment["KUBERNETES_SERVICE_HOST"] = nil
            let result = try await runCommand(TestEnvironment.daemonPath, ["--config", config, "--log-format", "text"], environment: environment)
            #expect(result.status == 78 && result.stderr.contains("in-cluster needs KUBERNETES_SERVICE_HOST"), "\(result.stderr)")
            let check = try await runCommand(TestEnvironment.daemonPath, ["check-config", "--config", config], environment: environment)
            #expect(check.status == 0, "check-config runs anywhere: \(check.stderr)")
        }
    }

    @Test("the daemon keeps one heap arena, also after its threads have served requests (a second held a half-empty heap)")
    func oneHeapArena() async throws {
        try await Scenario.run(logLevel: "info") { scenario in
            for _ in 0..<20 { #expect(try await scenario.broker.request(#"{"op":"token","scope":"\#(Scenario.scope)"}"#).ok) }
            // A glibc arena other than the main one is an anonymous mapping at a 64 MiB boundary,
            // read-write, whose 64 MiB reservation goes on inaccessible (thread stacks are the
            // other way round: the guard page first).
            let maps = try String(contentsOfFile: "/proc/\(scenario.broker.process.process.processIdentifier)/maps", encoding: .utf8)
            let regions = maps.split(separator: "\n").map { line -> (start: UInt64, end: UInt64, perms: Substring, anonymous: Bool) in
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                let bounds = fields[0].split(separator: "-").map { UInt64($0, radix: 16) ?? 0 }
                return (bounds[0], bounds[1], fields[1], fields.count < 6)
            }
            let arenas = zip(regions, regions.dropFirst()).filter { heap, rest in
                heap.anonymous && heap.perms == "rw-p" && heap.start % 0x400_0000 == 0 && rest.start == heap.end && rest.perms == "---p"
                    && rest.end == heap.start + 0x400_0000
            }
            #expect(arenas.isEmpty, "arenas besides the main heap at \(arenas.map { String($0.0.start, radix: 16) })")
        }
    }

    @Test("permission denied on the socket names the group to join")
    func permissionDeniedNamesTheGroup() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(chmod(directory, 0o755) == 0)
        // A listening socket root owns, mode 0660, group root: nobody may not connect.
        let path = "\(directory)/broker.sock"
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8) + [0])
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0 && listen(listener, 1) == 0 && chmod(path, 0o660) == 0)
        let got = try await OtherUser.run(
            [TestEnvironment.cliPath, "get", "--socket", path, "--scope", "https://storage.azure.com/.default"], uid: 65534, gid: 65534, groups: nil)
        #expect(got.status == 69)
        #expect(got.stderr.contains("lets group 'root' connect") && got.stderr.contains("usermod -aG root nobody"), "\(got.stderr)")
    }
}
