import Foundation
import Testing

/// `GET /metrics` on the socket, read by prometheus_client's parser.
@Suite("Prometheus metrics")
struct MetricsTests {
    private func scrape(_ socket: String) async throws -> [String: Double] {
        let text = try await runCommand("/usr/bin/curl", ["-sS", "--fail", "--unix-socket", socket, "http://localhost/metrics"])
        #expect(text.status == 0, "\(text.stderr)")
        let parsed = try await runCommand(TestEnvironment.python, ["\(TestEnvironment.fixtures)/python/parse_metrics.py"], stdin: text.stdout)
        #expect(parsed.status == 0, "not valid Prometheus text: \(parsed.stderr)\n\(text.stdout.prefix(2000))")
        let object = try JSONSerialization.jsonObject(with: Data(parsed.stdout.utf8)) as? [String: Double]
        return try #require(object)
    }

    @Test("the exposition parses, and its counters and gauges move with traffic")
    func countersMove() async throws {
        try await Scenario.run { scenario in
            let socket = scenario.broker.socketPath
            let before = try await scrape(socket)
            let ok = "tokenbroker_requests_total{op=token,outcome=ok}"
            let unknown = "tokenbroker_requests_total{op=token,outcome=unknown_identity}"
            for _ in 0..<3 { #expect(try await scenario.broker.request(#"{"op":"token","scope":"\#(Scenario.scope)"}"#).ok) }
            _ = try await scenario.broker.request(#"{"op":"token","scope":"x","identity":"ghost"}"#)

            let after = try await scrape(socket)
            #expect((after[ok] ?? 0) - (before[ok] ?? 0) == 3)
            #expect((after[unknown] ?? 0) - (before[unknown] ?? 0) == 1)
            #expect(after["tokenbroker_cache_misses_total{identity=default}"] == 1)
            #expect(after["tokenbroker_cache_hits_total{identity=default}"] ?? 0 >= 2)
            #expect(after["tokenbroker_upstream_exchanges_total{identity=default,result=ok}"] == 1)
            #expect(after["tokenbroker_upstream_exchange_duration_seconds_count{identity=default}"] == 1)
            let expiry = try #require(after["tokenbroker_token_expires_in_seconds{identity=default,scope=\(Scenario.scope)}"])
            #expect(expiry > 3000 && expiry <= 3600)
            #expect(after["tokenbroker_assertion_age_seconds{identity=default}"] != nil)
            #expect(after["tokenbroker_open_connections{}"] ?? 0 >= 1, "the scrape's own connection is open")
        }
    }
}
