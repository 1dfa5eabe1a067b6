import Foundation
import OffPool
import Testing

/// SIGHUP with files that must not be applied, and with sections that now apply live.
@Suite("Reload refuses what would empty or wedge the broker")
struct ConfigurationReloadTests {
    static func occurrences(_ text: String, in scenario: Scenario) -> Int {
        scenario.broker.process.stderr.components(separatedBy: text).count - 1
    }

    /// Sends SIGHUP and waits until one more line containing `text` is logged.
    static func reload(_ scenario: Scenario, expect text: String) async throws {
        let before = occurrences(text, in: scenario)
        scenario.broker.process.signal(SIGHUP)
        try await waitUntil(timeout: .seconds(30), "'\(text)' after SIGHUP") { occurrences(text, in: scenario) > before }
    }

    @Test("an empty file, comments only or identities: [] is refused unless allowNoIdentities says so")
    func refusedEmptyFiles() async throws {
        try await Scenario.run(logLevel: "info") { scenario in
            let path = scenario.broker.configPath
            let original = try String(contentsOfFile: path, encoding: .utf8)
            let withoutIdentities = String(original[..<original.range(of: "identities:")!.lowerBound])
            let request = #"{"op":"token","identity":"default","scope":"\#(Scenario.scope)"}"#
            let token = try #require(try await scenario.broker.request(request).token)
            for (name, text) in [("empty", ""), ("comments", "# nothing yet\n"), ("identities: []", withoutIdentities + "identities: []\n")] {
                try text.write(toFile: path, atomically: true, encoding: .utf8)
                try await Self.reload(scenario, expect: "reload rejected")
                #expect(scenario.broker.process.stderr.contains("no identities"), "\(name): \(scenario.broker.process.stderr.suffix(1500))")
                #expect(try await scenario.broker.request(request).token == token, "\(name): the previous configuration still serves")
            }
            // Serving nothing on purpose takes an explicit key.
            try (withoutIdentities + "identities: []\nallowNoIdentities: true\n").write(toFile: path, atomically: true, encoding: .utf8)
            try await Self.reload(scenario, expect: "configuration reloaded")
            #expect(try await scenario.broker.request(request).ok == false)
        }
    }

    @Test("a FIFO or a directory at the path is refused at once; later SIGHUPs work and SIGTERM completes")
    func refusedSpecialFiles() async throws {
        try await Scenario.run(logLevel: "info") { scenario in
            let path = scenario.broker.configPath
            let original = try String(contentsOfFile: path, encoding: .utf8)
            let request = #"{"op":"token","identity":"default","scope":"\#(Scenario.scope)"}"#
            let token = try #require(try await scenario.broker.request(request).token)
            try FileManager.default.removeItem(atPath: path)
            for (name, kind) in [("FIFO", "is a FIFO"), ("directory", "is a directory")] {
                if name == "FIFO" {
                    #expect(mkfifo(path, 0o600) == 0)
                } else {
                    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
                }
                // Recorded, not thrown: what SIGTERM does afterwards is the other half of the test.
                await #expect(throws: Never.self) { try await Self.reload(scenario, expect: "reload rejected") }
                #expect(scenario.broker.process.stderr.contains(kind), "\(name): \(scenario.broker.process.stderr.suffix(1500))")
                #expect(try await scenario.broker.request(request).token == token, "\(name): the previous configuration still serves")
                #expect(name == "FIFO" ? unlink(path) == 0 : rmdir(path) == 0)
            }
            try original.write(toFile: path, atomically: true, encoding: .utf8)
            await #expect(throws: Never.self) { try await Self.reload(scenario, expect: "configuration reloaded") }

            let stopping = ContinuousClock.now
            let status = await scenario.broker.stop()
            #expect(ContinuousClock.now - stopping < .seconds(5), "SIGTERM completed within the harness's grace")
            #expect(status == 0, "clean exit: \(scenario.broker.process.stderr.suffix(1500))")
        }
    }

    @Test("cache.minValiditySeconds applies at once to the tokens served")
    func minimumValidityIsLive() async throws {
        // No refresh interval: a request wanting more validity than the token has refreshes at once.
        try await Scenario.run(logLevel: "info", extraYAML: "cache: { minRefreshIntervalSeconds: 0 }") { scenario in
            let path = scenario.broker.configPath
            let request = #"{"op":"token","identity":"default","scope":"\#(Scenario.scope)"}"#
            #expect(try await scenario.broker.request(request).ok)
            #expect(try await scenario.broker.request(request).ok)
            let exchanges = try await scenario.provider.stats().tokenRequests
            // The dev provider's tokens last an hour: asking for two hours makes the next request refresh.
            let yaml = try String(contentsOfFile: path, encoding: .utf8)
                .replacingOccurrences(
                    of: "cache: { minRefreshIntervalSeconds: 0 }", with: "cache: { minRefreshIntervalSeconds: 0, minValiditySeconds: 7200 }")
            try yaml.write(toFile: path, atomically: true, encoding: .utf8)
            try await Self.reload(scenario, expect: "configuration reloaded")
            #expect(
                !scenario.broker.process.stderr.split(separator: "\n").contains { $0.contains("next restart") },
                "not reported as waiting for a restart")
            _ = try await scenario.broker.request(request)
            try await waitUntil(timeout: .seconds(30), "a refresh for the new minimum") {
                try await scenario.provider.stats().tokenRequests > exchanges
            }
        }
    }

    @Test("log.level and the request rate apply at once; keys that need a restart are named")
    func liveAndRestartKeys() async throws {
        try await Scenario.run(logLevel: "info") { scenario in
            let path = scenario.broker.configPath
            let request = #"{"op":"token","identity":"default","scope":"\#(Scenario.scope)"}"#
            #expect(try await scenario.broker.request(request).ok)
            #expect(!scenario.broker.process.stderr.contains("token served"), "no debug records at info")

            var yaml = try String(contentsOfFile: path, encoding: .utf8)
            yaml = yaml.replacingOccurrences(
                of: "log: { level: info }",
                with: "log: { level: debug }\nlimits: { eventLoopThreads: 2, requestsPerSecondPerUID: 1, requestBurstPerUID: 3 }")
            yaml = yaml.replacingOccurrences(
                of: "socket: { path: \(scenario.broker.socketPath) }", with: "socket: { path: \(scenario.broker.socketPath), mode: \"0600\" }")
            try yaml.write(toFile: path, atomically: true, encoding: .utf8)
            try await Self.reload(scenario, expect: "configuration reloaded")
            let log = scenario.broker.process.stderr
            let restart = try #require(log.split(separator: "\n").first { $0.contains("restart") }, "\(log.suffix(1500))")
            #expect(restart.contains("limits.eventLoopThreads") && restart.contains("socket.mode"), "\(restart)")
            #expect(
                !restart.contains("log.level") && !restart.contains("requestsPerSecondPerUID") && !restart.contains("requestBurstPerUID"),
                "\(restart)")

            #expect(try await scenario.broker.request(request).ok)
            try await waitUntil(timeout: .seconds(30), "a debug record") { scenario.broker.process.stderr.contains("token served") }
            // The new rate: a burst of 3, then one a second. Ten misses (new scopes) in one
            // write arrive together, however loaded the machine is.
            let socket = scenario.broker.socketPath
            let codes = try await offPool {
                let connection = try UnixSocketConnection(path: socket)
                defer { connection.close() }
                try connection.send(
                    (0..<10).map { #"{"op":"token","identity":"default","scope":"https://reload-\#($0).example/.default"}"# + "\n" }.joined())
                return try (0..<10).map { _ in try connection.readJSONLine().errorCode ?? "ok" }
            }
            #expect(codes.contains("throttled"), "\(codes)")
        }
    }
}
