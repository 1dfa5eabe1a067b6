import Foundation
import Testing

/// The daemon as systemd sees it: notifications, watchdog, reload, restarts on a
/// held socket.
@Suite("Running under systemd")
struct ServiceLifecycleTests {
    @Test("READY with STATUS, WATCHDOG pings, RELOADING/READY on SIGHUP, STOPPING on SIGTERM, then a clean exit")
    func notificationsInOrder() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (notify, environment) = try NotifySocket.make(in: directory, extra: ["WATCHDOG_USEC": "400000"])
        defer { notify.close() }
        try await Scenario.run(environment: environment) { scenario in
            try await notify.wait(for: "READY=1") { $0.contains("READY=1") }
            try await waitUntil("three watchdog pings") { notify.received.filter { $0 == "WATCHDOG=1" }.count >= 3 }

            scenario.broker.process.signal(SIGHUP)
            try await notify.wait(for: "READY=1 after RELOADING=1") { _ in
                let messages = notify.received
                guard let reloading = messages.firstIndex(where: { $0.contains("RELOADING=1") }) else { return false }
                return messages[reloading...].dropFirst().contains { $0.contains("READY=1") }
            }
            #expect(try await scenario.broker.request(#"{"op":"ping"}"#).ok, "still serving after the reload")

            let status = await scenario.broker.stop()
            #expect(status == 0, "clean exit: \(scenario.broker.process.stderr.suffix(2000))")
            let messages = notify.received
            let ready = try #require(messages.firstIndex { $0.contains("READY=1") })
            #expect(messages[ready].contains("STATUS=serving 1 identity"), "READY carries the status line: \(messages[ready])")
            let reloading = try #require(messages.firstIndex { $0.contains("RELOADING=1") })
            #expect(messages[reloading].contains("MONOTONIC_USEC="))
            let stopping = try #require(messages.firstIndex { $0.contains("STOPPING=1") })
            #expect(ready < reloading && reloading < stopping)
            #expect(messages.last { $0.contains("READY=1") }.map { messages.lastIndex(of: $0)! < stopping } == true)
        }
    }

    @Test("readiness: token sends READY=1 only once the prefetch scopes hold a token, or says why after the timeout")
    func readinessWaitsForTokens() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (notify, environment) = try NotifySocket.make(in: directory)
        defer { notify.close() }
        let prefetched = "api://prefetched/.default"
        try await Scenario.run(
            identities: { directory, provider in
                let intruder = try await provider.mint(sub: "system:serviceaccount:default:intruder")
                return [
                    .init(name: "warm", tokenFile: provider.endpoints.tokenFile, prefetch: [prefetched]),
                    .init(name: "never", tokenFile: try Scenario.writeTokenFile(intruder, in: directory, name: "intruder"), prefetch: [prefetched]),
                ]
            },
            extraYAML: "readiness: { mode: token, timeoutSeconds: 10 }",  // long enough for a loaded machine
            environment: environment
        ) { scenario in
            try await notify.wait(for: "READY=1") { $0.contains("READY=1") }
            let ready = try #require(notify.received.first { $0.contains("READY=1") })
            #expect(try await scenario.provider.stats().byScope[prefetched] ?? 0 >= 1, "the prefetch exchange happened before READY")
            #expect(ready.contains("without tokens for never"), "STATUS names what is missing: \(ready)")
            #expect(!ready.contains("warm \(prefetched)"), "the warm identity's token was there: \(ready)")
            #expect(notify.received.contains { $0.hasPrefix("STATUS=waiting for first tokens") }, "STATUS said what it waited for")
        }
    }

    @Test("ten restarts on a held socket lose no request")
    func restartsLoseNothing() async throws {
        try await Scenario.run { scenario in
            let socket = "\(scenario.directory)/held.sock"
            let request = #"{"op":"token","scope":"\#(Scenario.scope)"}"#
            let result = try await runCommand(
                TestEnvironment.python,
                [
                    "\(TestEnvironment.fixtures)/python/socket_holder.py", socket, "10", request, "--", TestEnvironment.daemonPath, "--config",
                    scenario.broker.configPath,
                ])
            #expect(result.status == 0, "\(result.stderr.suffix(2000))")
            let summary = try Reply(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            #expect(summary["restarts"] as? Int == 10)
            #expect((summary["requests"] as? Int ?? 0) > 20, "the client kept sending: \(summary)")
            #expect(summary["failures"] as? Int == 0, "\(summary)")
            #expect((summary["exitCodes"] as? [Int]) == Array(repeating: 0, count: 11), "\(summary)")
            #expect(FileManager.default.fileExists(atPath: socket) || true)
        }
    }

    @Test("SIGHUP: a broken file keeps the old configuration; a changed one keeps unchanged identities' tokens")
    func reload() async throws {
        try await Scenario.run(identities: { _, provider in
            [.init(name: "other", tokenFile: provider.endpoints.tokenFile)]
        }) { scenario in
            let first = try await scenario.broker.request(#"{"op":"token","identity":"default","scope":"\#(Scenario.scope)"}"#)
            let token = try #require(first.token)
            #expect(try await scenario.broker.request(#"{"op":"token","identity":"other","scope":"\#(Scenario.scope)"}"#).ok)
            let exchanges = try await scenario.provider.stats().tokenRequests
            let original = try String(contentsOfFile: scenario.broker.configPath, encoding: .utf8)

            // A broken file: every problem logged, the old configuration kept.
            try "identities:\n  - name: default\n    sorce: {}\n".write(toFile: scenario.broker.configPath, atomically: true, encoding: .utf8)
            scenario.broker.process.signal(SIGHUP)
            try await waitUntil("the rejected reload to be logged") { scenario.broker.process.stderr.contains("reload rejected") }
            #expect(scenario.broker.process.stderr.contains("identities[0].sorce"))
            #expect(try await scenario.broker.request(#"{"op":"token","identity":"other","scope":"\#(Scenario.scope)"}"#).ok)
            #expect(try await scenario.broker.request(#"{"op":"token","identity":"default","scope":"\#(Scenario.scope)"}"#).token == token)

            // A changed file: `other` removed, `added` new, `default` unchanged.
            let changed = original.replacingOccurrences(of: "- name: other", with: "- name: added")
            try changed.write(toFile: scenario.broker.configPath, atomically: true, encoding: .utf8)
            scenario.broker.process.signal(SIGHUP)
            try await waitUntil("the reload") { scenario.broker.process.stderr.contains("configuration reloaded") }
            #expect(try await scenario.broker.request(#"{"op":"token","identity":"default","scope":"\#(Scenario.scope)"}"#).token == token)
            #expect(try await scenario.provider.stats().tokenRequests == exchanges, "the unchanged identity kept its cached token")
            #expect(try await scenario.broker.request(#"{"op":"token","identity":"other","scope":"x"}"#).errorCode == "unknown_identity")
            #expect(try await scenario.broker.request(#"{"op":"token","identity":"added","scope":"\#(Scenario.scope)"}"#).ok)
        }
    }
}
