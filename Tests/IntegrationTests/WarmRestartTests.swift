import Foundation
import OffPool
import Testing

/// Warm restarts through the file-descriptor store, with `socket_holder.py --fdstore`
/// playing systemd: it receives `FDSTORE=1` and the memfd over the notify socket
/// (SCM_RIGHTS), keeps it, and passes it back with the listening socket
/// (`LISTEN_FDS=2`, `LISTEN_FDNAMES=broker:tokencache`) to the next process.
@Suite("Warm restarts keep the token cache")
struct WarmRestartTests {
    static let request = #"{"op":"token","scope":"\#(Scenario.scope)"}"#

    /// Runs the holder for `restarts` restarts; returns its summary, the daemons' log and
    /// how many exchanges the token service saw meanwhile.
    static func hold(_ scenario: Scenario, restarts: Int, options: [String]) async throws -> (summary: Reply, log: String, exchanges: Int) {
        let before = try await scenario.provider.stats().tokenRequests
        let result = try await runCommand(
            TestEnvironment.python,
            ["\(TestEnvironment.fixtures)/python/socket_holder.py", "\(scenario.directory)/held.sock", String(restarts), request] + options
                + ["--", TestEnvironment.daemonPath, "--config", scenario.broker.configPath])
        #expect(result.status == 0, "\(result.stderr.suffix(3000))")
        let summary = try Reply(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        return (summary, result.stderr, try await scenario.provider.stats().tokenRequests - before)
    }

    @Test("ten restarts under load with socket activation: no failed request, no exchange after the first")
    func tenRestartsExchangeOnce() async throws {
        try await Scenario.run { scenario in
            let (summary, log, exchanges) = try await Self.hold(scenario, restarts: 10, options: ["--fdstore"])
            #expect((summary["requests"] as? Int ?? 0) > 20, "the client kept sending: \(summary)")
            #expect(summary["failures"] as? Int == 0, "\(summary)")
            #expect((summary["exitCodes"] as? [Int]) == Array(repeating: 0, count: 11), "\(summary)")
            #expect(exchanges == 1, "one exchange, by the first process; the others restored it: \(summary)\n\(log.suffix(3000))")
            let store = try #require(summary["fdstore"] as? [String: Int])
            #expect(store["unsealed"] == 0, "every memfd the daemon stored was sealed: \(store)")
            #expect(store["passed"] == 10, "one stored cache passed to each restart (the old one removed first): \(store)")
            #expect(store["stored"] == store["removed"].map { $0 + 1 }, "FDSTOREREMOVE=1 before each FDSTORE=1 after the first: \(store)")
            let restored = log.components(separatedBy: "\n").filter { $0.contains("warm restart: restored 1 of 1 cached tokens") }
            #expect(restored.count == 10, "each restart logged what it restored: \(log.suffix(3000))")
            #expect(!log.contains("eyJ"), "no token in the log")
        }
    }

    @Test("a crash after a change: the store made while running (at most 10 s after it) is restored")
    func crashRestoresWhatWasStoredWhileRunning() async throws {
        try await Scenario.run { scenario in
            let (summary, log, exchanges) = try await Self.hold(scenario, restarts: 1, options: ["--fdstore", "--crash"])
            // Requests in flight at the SIGKILL may fail: that is the crash, not the cache.
            #expect((summary["exitCodes"] as? [Int]) == [-9, 0], "\(summary)")
            #expect(log.contains("warm restart: restored 1 of 1 cached tokens"), "\(log.suffix(3000))")
            #expect(exchanges == 1, "the restarted process used the stored token: \(summary)")
        }
    }

    @Test("a token of an identity whose client id changed across the restart is not restored")
    func changedIdentityStartsCold() async throws {
        let otherClient = "0a11ce00-0000-4000-8000-00000000f1d0"
        try await Scenario.run(extraClientIds: [otherClient]) { scenario in
            let changed = "\(scenario.directory)/changed.yaml"
            try BrokerDaemon.configurationYAML(
                socketPath: scenario.broker.socketPath, provider: scenario.provider,
                identities: [.init(name: "default", tokenFile: scenario.provider.endpoints.tokenFile, clientId: otherClient)]
            ).write(toFile: changed, atomically: true, encoding: .utf8)
            let (summary, log, exchanges) = try await Self.hold(scenario, restarts: 1, options: ["--fdstore", "--next-config=\(changed)"])
            #expect(summary["failures"] as? Int == 0, "\(summary)")
            #expect(log.contains("warm restart: restored 0 of 1 cached tokens"), "\(log.suffix(3000))")
            #expect(log.contains("restart.identity_changed=1"), "the log says why")
            #expect(exchanges == 2, "the changed identity exchanged again: \(summary)")
            let requests = try await scenario.provider.stats().requests.suffix(2)
            #expect(requests.map(\.clientId) == [scenario.provider.endpoints.clientId, otherClient], "the second exchange was the new client's")
        }
    }

    @Test("a memfd named tokencache passed without a socket is not taken for the listening socket: the broker binds its own")
    func storeEntryIsNotTakenForTheSocket() async throws {
        try await Scenario.run { scenario in
            let socket = "\(scenario.directory)/own.sock", configuration = "\(scenario.directory)/own.yaml"
            try BrokerDaemon.configurationYAML(
                socketPath: socket, provider: scenario.provider,
                identities: [.init(name: "default", tokenFile: scenario.provider.endpoints.tokenFile)]
            ).write(toFile: configuration, atomically: true, encoding: .utf8)
            let process = try ChildProcess(
                executable: TestEnvironment.python,
                arguments: [
                    "\(TestEnvironment.fixtures)/python/with_stored_memfd.py", "this is not a token cache snapshot", "--", TestEnvironment.daemonPath,
                    "--config", configuration,
                ],
                logDirectory: scenario.directory, name: "memfd-only")
            do {
                // Before the fix, a single inherited descriptor not named compat was adopted as the
                // listening socket, and the daemon failed to serve a memfd.
                try await waitUntil("its own socket") {
                    guard process.isRunning else { throw HarnessError("tokenbrokerd exited: \(process.stderr.suffix(2000))") }
                    return FileManager.default.fileExists(atPath: socket) && process.stderr.contains("ready")
                }
                let reply = try await offPool {
                    let connection = try UnixSocketConnection(path: socket)
                    try connection.send(#"{"op":"ping"}"# + "\n")
                    return try connection.readJSONLine()
                }
                #expect(reply.ok, "\(reply)")
                #expect(process.stderr.contains("warm restart: refused the stored token cache (bad_magic"), "\(process.stderr.suffix(2000))")
            } catch {
                _ = await process.stop()
                throw error
            }
            #expect(await process.stop() == 0)
        }
    }

    @Test("a stored cache that is not sealed is refused with a clear log line; the broker starts cold", arguments: ["unsealed", "flipped"])
    func tamperedCacheIsRefused(tamper: String) async throws {
        try await Scenario.run { scenario in
            let (summary, log, exchanges) = try await Self.hold(scenario, restarts: 1, options: ["--fdstore", "--tamper=\(tamper)"])
            #expect(summary["failures"] as? Int == 0, "\(summary)")
            let store = try #require(summary["fdstore"] as? [String: Int])
            #expect(store["tampered"] == 1, "\(store)")
            let expected =
                tamper == "unsealed"
                ? "warm restart: refused the stored token cache (not_sealed: the memfd is not sealed"
                : "warm restart: refused the stored token cache (checksum_mismatch: CRC-32 of the payload does not match the header); starting cold"
            #expect(log.contains(expected), "\(log.suffix(3000))")
            #expect(!log.contains("warm restart: restored"), "nothing restored from it")
            #expect(exchanges == 2, "the second process started cold and exchanged again: \(summary)")
        }
    }
}
