import Foundation
import Testing

/// A client asking for the same token again and again on one connection gets the
/// connection's last answer repeated (without resolution, cache lookup or encoding).
/// A repeat must be exactly as right, as limited and as visible as the first answer.
@Suite("Repeated answers on one connection")
struct RepeatedAnswerTests {
    private static func counter(_ name: String, labels: String, socket: String) async throws -> Double {
        let text = try await runCommand("/usr/bin/curl", ["-sS", "--fail", "--unix-socket", socket, "http://localhost/metrics"])
        let line = text.stdout.split(separator: "\n").first { $0.hasPrefix("\(name){\(labels)}") }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
    }

    @Test("repeats carry their own id, count down expiresIn, are counted, and end when a reload takes the caller's access away")
    func repeatsFollowTimeConfigurationAndMetrics() async throws {
        try await Scenario.run { scenario in
            let socket = scenario.broker.socketPath
            let connection = try UnixSocketConnection(path: socket)
            func ask(_ id: Int) throws -> Reply {
                try connection.send(#"{"op":"token","scope":"\#(Scenario.scope)","id":\#(id)}"# + "\n")
                return try connection.readJSONLine()
            }
            let first = try ask(1)
            #expect(first.ok, "\(first)")
            let ok = #"op="token",outcome="ok""#
            let okBefore = try await Self.counter("tokenbroker_requests_total", labels: ok, socket: socket)
            let hitsBefore = try await Self.counter("tokenbroker_cache_hits_total", labels: #"identity="default""#, socket: socket)
            var expiresIn = try #require(first["expiresIn"] as? Int)
            for id in 2...200 {
                let reply = try ask(id)
                #expect(
                    reply.ok && reply.token == first.token && reply["id"] as? Int == id && reply["scope"] as? String == Scenario.scope, "\(reply)")
                let left = try #require(reply["expiresIn"] as? Int)
                #expect(left <= expiresIn, "expiresIn only counts down")
                expiresIn = left
            }
            #expect(try await Self.counter("tokenbroker_requests_total", labels: ok, socket: socket) - okBefore == 199)
            #expect(try await Self.counter("tokenbroker_cache_hits_total", labels: #"identity="default""#, socket: socket) - hitsBefore == 199)

            // The answer is not repeated past the second its expiresIn was right for.
            try await Task.sleep(for: .milliseconds(1100))
            let later = try ask(201)
            #expect(try #require(later["expiresIn"] as? Int) < expiresIn)

            // A reload that no longer lets this uid (root) use the identity ends the repeats.
            let yaml = BrokerDaemon.configurationYAML(
                socketPath: socket, provider: scenario.provider,
                identities: [.init(name: "default", tokenFile: scenario.provider.endpoints.tokenFile, allow: "[ { uid: 4242 } ]")])
            try yaml.write(toFile: scenario.broker.configPath, atomically: true, encoding: .utf8)
            #expect(try ask(202).ok)
            scenario.broker.process.signal(SIGHUP)
            try await waitUntil("the reload") { scenario.broker.process.stderr.contains("configuration reloaded") }
            let refused = try ask(203)
            #expect(refused.errorCode == "forbidden", "\(refused)")
        }
    }

    @Test("the same line pipelined in one write is answered and counted line by line, and audited in one record that says how many")
    func pipelinedRunsAreCountedAndAudited() async throws {
        try await Scenario.run(logLevel: "info") { scenario in
            let socket = scenario.broker.socketPath
            let connection = try UnixSocketConnection(path: socket)
            let line = #"{"op":"token","scope":"\#(Scenario.scope)"}"# + "\n"
            try connection.send(line)
            let first = try connection.readJSONLine()
            #expect(first.ok, "\(first)")
            let ok = #"op="token",outcome="ok""#
            let okBefore = try await Self.counter("tokenbroker_requests_total", labels: ok, socket: socket)
            let hitsBefore = try await Self.counter("tokenbroker_cache_hits_total", labels: #"identity="default""#, socket: socket)
            try connection.send(String(repeating: line, count: 50))
            let replies = try (0..<50).map { _ in try connection.readJSONLine() }
            #expect(replies.allSatisfy { $0.ok && $0.token == first.token })
            #expect(try await Self.counter("tokenbroker_requests_total", labels: ok, socket: socket) - okBefore == 50)
            #expect(try await Self.counter("tokenbroker_cache_hits_total", labels: #"identity="default""#, socket: socket) - hitsBefore == 50)
            try await waitUntil("the run's audit record") { scenario.broker.process.stderr.contains("audit.answers=") }
        }
    }

    @Test("repeats of a cached answer are never rate limited; misses on the same connection are")
    func repeatsAreNotRateLimited() async throws {
        try await Scenario.run(extraYAML: "limits: { requestsPerSecondPerUID: 1, requestBurstPerUID: 5 }") { scenario in
            let connection = try UnixSocketConnection(path: scenario.broker.socketPath)
            func ask(_ id: Int, scope: String = Scenario.scope) throws -> Reply {
                try connection.send(#"{"op":"token","scope":"\#(scope)","id":\#(id)}"# + "\n")
                let reply = try connection.readJSONLine()
                #expect(reply["id"] as? Int == id)
                return reply
            }
            // 100 times the burst, one after the other: the first a miss, the rest repeats.
            let outcomes = try (1...500).map { try ask($0).errorCode ?? "ok" }
            #expect(outcomes.allSatisfy { $0 == "ok" }, "\(outcomes.filter { $0 != "ok" })")
            // Misses (new scopes) in one write: beyond the burst, throttled.
            try connection.send(
                (0..<20).map { #"{"op":"token","scope":"https://repeat-miss-\#($0).example/.default","id":\#(1000 + $0)}"# + "\n" }.joined())
            let misses = try (0..<20).map { _ in try connection.readJSONLine().errorCode ?? "ok" }
            #expect(misses.contains("throttled") && misses.allSatisfy { $0 == "ok" || $0 == "throttled" }, "\(misses)")
            // And the cached token is still answered at once.
            #expect(try ask(2000).ok)
        }
    }
}
