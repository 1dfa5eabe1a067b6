import Foundation
import OffPool
import Testing

/// The broker against the dev provider, as a user sees it: real processes, real
/// sockets, real TLS, real federated exchanges.
@Suite("Federated exchange end to end")
struct ExchangeTests {
    @Test("the same token comes back through the CLI, HTTP and NDJSON")
    func sameTokenThreeWays() async throws {
        try await Scenario.run { scenario in
            let cli = try await runCommand(TestEnvironment.cliPath, ["get", "--socket", scenario.broker.socketPath, "--scope", Scenario.scope])
            #expect(cli.status == 0, "\(cli.stderr)")
            let viaCLI = cli.stdout.trimmingCharacters(in: .whitespacesAndNewlines)

            let curl = try await runCommand(
                "/usr/bin/curl", ["-sS", "--unix-socket", scenario.broker.socketPath, "http://localhost/v1/token?scope=\(Scenario.scope)"])
            let viaHTTP = try Reply(curl.stdout)

            let viaNDJSON = try await scenario.broker.request(#"{"op":"token","scope":"\#(Scenario.scope)","id":7}"#)
            #expect(viaNDJSON["id"] as? Int == 7)
            #expect(viaNDJSON["tokenType"] as? String == "Bearer")
            #expect((viaNDJSON["expiresIn"] as? Int ?? 0) > 3000)
            #expect(viaNDJSON["identity"] as? String == "default")

            #expect(!viaCLI.isEmpty)
            #expect(viaHTTP.token == viaCLI)
            #expect(viaNDJSON.token == viaCLI)
            #expect(try await scenario.provider.stats().byScope[Scenario.scope] == 1, "one exchange serves all three")
        }
    }

    @Test("100 concurrent cold requests make exactly one upstream request")
    func singleFlight() async throws {
        try await Scenario.run { scenario in
            try await scenario.provider.setLatency(milliseconds: 300)
            let scope = "api://single-flight/.default"
            let socket = scenario.broker.socketPath
            let tokens = try await withThrowingTaskGroup(of: String?.self) { group in
                for _ in 0..<100 {
                    group.addTask {
                        try await offPool {
                            let connection = try UnixSocketConnection(path: socket)
                            try connection.send(#"{"op":"token","scope":"\#(scope)"}"# + "\n")
                            return try connection.readJSONLine().token
                        }
                    }
                }
                var all: [String?] = []
                for try await token in group { all.append(token) }
                return all
            }
            #expect(tokens.count == 100)
            #expect(Set(tokens.compactMap { $0 }).count == 1, "all callers get the one token")
            #expect(tokens.allSatisfy { $0 != nil })
            #expect(try await scenario.provider.stats().byScope[scope] == 1)
        }
    }

    @Test("a kubelet AtomicWriter rotation is used by the next exchange, without restart")
    func rotationPickedUp() async throws {
        try await Scenario.run { scenario in
            let first = try await scenario.broker.request(#"{"op":"token","scope":"api://before-rotation/.default"}"#)
            #expect(first.ok)
            let jtiBefore = try await scenario.provider.stats().requests.last?.assertionJti
            let jti = try await scenario.provider.rotate()
            #expect(jti != jtiBefore)
            // The broker reacts to the ..data swap through inotify; wait until an exchange uses the new assertion.
            var used: String?
            try await waitUntil(timeout: .seconds(10), "the rotated assertion to be used") {
                let scope = "api://after-rotation-\(UUID().uuidString.prefix(8))/.default"
                _ = try await scenario.broker.request(#"{"op":"token","scope":"\#(scope)"}"#)
                used = try await scenario.provider.stats().requests.last?.assertionJti
                return used == jti
            }
            #expect(used == jti)
        }
    }

    @Test("an expired assertion file gives assertion_expired and no upstream call")
    func expiredAssertion() async throws {
        try await Scenario.run(identities: { directory, provider in
            let expired = try await provider.mint(ttlSeconds: 600, issuedAtOffsetSeconds: -3600)
            return [.init(name: "stale", tokenFile: try Scenario.writeTokenFile(expired, in: directory, name: "expired-token"))]
        }) { scenario in
            let before = try await scenario.provider.stats().tokenRequests
            let answer = try await scenario.broker.request(#"{"op":"token","scope":"\#(Scenario.scope)","identity":"stale"}"#)
            #expect(answer.errorCode == "assertion_expired")
            #expect(answer.errorMessage.contains("\(scenario.directory)/expired-token"), "names the file: \(answer.errorMessage)")
            #expect(answer.errorMessage.contains("exp="), "names the exp: \(answer.errorMessage)")
            #expect(try await scenario.provider.stats().tokenRequests == before)

            // Asked again and again, the failure backs off longer each time; a fixed file ends
            // that at once (the next request is tried, not minutes later).
            let asking = ContinuousClock.now
            while asking.duration(to: .now) < .seconds(3) {
                #expect(
                    try await scenario.broker.request(#"{"op":"token","scope":"\#(Scenario.scope)","identity":"stale"}"#).errorCode
                        == "assertion_expired")
                try await Task.sleep(for: .milliseconds(100))
            }
            _ = try Scenario.writeTokenFile(try await scenario.provider.mint(), in: scenario.directory, name: "expired-token")
            try await Task.sleep(for: .milliseconds(300))  // the watcher reads it
            let fixed = try await scenario.broker.request(#"{"op":"token","scope":"\#(Scenario.scope)","identity":"stale"}"#)
            #expect(fixed.ok, "the fixed file is used at once: \(fixed)")
        }
    }

    @Test("a wrong subject gives upstream_rejected with the 70021-family code and the subject")
    func wrongSubject() async throws {
        let intruder = "system:serviceaccount:default:intruder"
        try await Scenario.run(identities: { directory, provider in
            [.init(name: "wrong", tokenFile: try Scenario.writeTokenFile(try await provider.mint(sub: intruder), in: directory, name: "wrong-token"))]
        }) { scenario in
            let answer = try await scenario.broker.request(#"{"op":"token","scope":"\#(Scenario.scope)","identity":"wrong"}"#)
            #expect(answer.errorCode == "upstream_rejected")
            #expect(!Set(answer.upstreamCodes).isDisjoint(with: [70021, 700211, 700212, 700213]), "codes: \(answer.upstreamCodes)")
            #expect(answer.errorMessage.contains(intruder), "message: \(answer.errorMessage)")
        }
    }

    @Test("upstream failures while a valid token is cached: callers keep getting it", arguments: [500, 429])
    func staleWhileValid(status: Int) async throws {
        // Refresh on every request that asks for more validity, so each one really tries upstream.
        try await Scenario.run(extraYAML: "cache: { minRefreshIntervalSeconds: 0 }") { scenario in
            let first = try await scenario.broker.request(#"{"op":"token","scope":"\#(Scenario.scope)"}"#)
            let token = try #require(first.token)
            try await scenario.provider.setFault(
                status: status, count: 1000, retryAfterSeconds: status == 429 ? 30 : nil, body: status == 429 ? "slow down" : nil)
            let before = try await scenario.provider.stats().tokenRequests
            let start = ContinuousClock.now
            // Asking for more validity than the cached token has forces a refresh, which fails upstream.
            for _ in 0..<5 {
                let answer = try await scenario.broker.request(#"{"op":"token","scope":"\#(Scenario.scope)","minValiditySeconds":7200}"#)
                #expect(answer.ok, "\(answer)")
                #expect(answer.token == token)
                #expect(try await scenario.broker.request(#"{"op":"token","scope":"\#(Scenario.scope)"}"#).token == token)
            }
            let after = try await scenario.provider.stats()
            #expect(after.tokenRequests > before, "a refresh really went upstream and failed")
            // Not a timing assertion: however long the loop took (a loaded machine), the
            // backoff (1 s, 2 s, 4 s, … −10 % jitter; 30 s after a 429) allows only so many
            // exchanges in that time, each at most 3 upstream attempts. Without backoff the
            // 5 refreshing requests would make 15.
            let elapsed = Double((ContinuousClock.now - start).components.seconds) + 1
            var exchanges = 1, waited = 0.0, delay = 1.0
            while waited + delay * 0.9 <= elapsed, status != 429 {
                waited += delay * 0.9
                delay *= 2
                exchanges += 1
            }
            #expect(
                after.tokenRequests - before <= min(3 * exchanges, 12),
                "failures back off instead of hammering: \(after.tokenRequests - before) in \(elapsed) s")
        }
    }
}
