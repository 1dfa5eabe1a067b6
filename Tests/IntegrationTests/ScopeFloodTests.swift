import Foundation
import OffPool
import Testing

/// A caller inventing scopes cannot grow the daemon: the cache keeps at most
/// `cache.maxScopesPerIdentity` scopes per identity, whatever is asked.
@Suite("Invented scopes")
struct ScopeFloodTests {
    static let bound = 64

    private static func residentKiB(_ pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
    }

    /// `count` token requests for `identity` and distinct scopes
    /// `https://invented-<offset+i>.example/.default`, pipelined in batches over a few
    /// connections; returns the answers' error codes (`ok` for a token) and their counts.
    private static func request(
        _ socket: String, identity: String, count: Int, offset: Int, connections: Int = 2, batchSize: Int = 32
    ) async throws -> [String: Int] {
        try await withThrowingTaskGroup(of: [String: Int].self) { group in
            for lane in 0..<connections {
                group.addTask {
                    try await offPool {
                        let connection = try UnixSocketConnection(path: socket)
                        var outcomes: [String: Int] = [:]
                        var next = lane
                        while next < count {
                            var batch: [Int] = []
                            while batch.count < batchSize, next < count {
                                batch.append(next)
                                next += connections
                            }
                            try connection.send(
                                batch.map {
                                    #"{"op":"token","identity":"\#(identity)","scope":"https://invented-\#(offset + $0).example/.default"}"# + "\n"
                                }.joined())
                            for _ in batch {
                                let reply = try connection.readJSONLine()
                                outcomes[reply.ok ? "ok" : reply.errorCode ?? "?", default: 0] += 1
                            }
                        }
                        return outcomes
                    }
                }
            }
            return try await group.reduce(into: [:]) { total, lane in total.merge(lane, uniquingKeysWith: +) }
        }
    }

    private static func cachedScopes(_ scenario: Scenario, identity: String) async throws -> [String] {
        let status = try await scenario.broker.request(#"{"op":"status"}"#)
        let identities = try #require((status["status"] as? [String: Any])?["identities"] as? [[String: Any]])
        return try #require(identities.first { $0["name"] as? String == identity }?["cachedScopes"] as? [String])
    }

    @Test("distinct invented scopes: tokens stay at the LRU bound, and a flood of more leaves memory flat")
    func cacheStaysBounded() async throws {
        let fresh = Self.count
        try await Scenario.run(
            identities: { directory, provider in
                // Exchanges that fail at once, with no network: 100,000 misses in seconds, each
                // making a cache entry (with its error and backoff) like any other miss.
                let expired = try await provider.mint(ttlSeconds: 60, issuedAtOffsetSeconds: -600)
                return [.init(name: "stale", tokenFile: try Scenario.writeTokenFile(expired, in: directory, name: "stale"))]
            }, logLevel: "info", extraYAML: "limits: { requestsPerSecondPerUID: 0 }\ncache: { maxScopesPerIdentity: \(Self.bound) }"
        ) { scenario in
            let socket = scenario.broker.socketPath
            let pid = scenario.broker.process.process.processIdentifier

            // Real exchanges: 300 tokens for distinct scopes; the cache keeps the last 64.
            let tokens = try await Self.request(socket, identity: "default", count: 300, offset: 0)
            #expect(tokens == ["ok": 300])
            let cached = try await Self.cachedScopes(scenario, identity: "default")
            #expect(cached.count == Self.bound, "cache holds \(cached.count) tokens")
            #expect(
                Set(cached).isSubset(of: Set((150..<300).map { "https://invented-\($0).example/.default" })), "the least recently used were evicted")

            // 100,000 more distinct scopes; memory is measured around the second half.
            let warm = try await Self.request(socket, identity: "stale", count: fresh / 2, offset: 1_000_000)
            let before = try Self.residentKiB(pid)
            let start = ContinuousClock.now
            let flood = try await Self.request(socket, identity: "stale", count: fresh - fresh / 2, offset: 2_000_000)
            let elapsed = ContinuousClock.now - start
            let after = try Self.residentKiB(pid)
            #expect(warm.merging(flood, uniquingKeysWith: +) == ["assertion_expired": fresh], "every request was answered")
            #expect(try await Self.cachedScopes(scenario, identity: "default").count == Self.bound)
            #expect(try await scenario.broker.request(#"{"op":"ping"}"#).ok)

            let auditLines = scenario.broker.process.stderr.components(separatedBy: "tokenbroker.audit").count - 1
            // Figures for the record, not assertions: RSS is the allocator's business.
            print(
                "scope flood: \(fresh) invented scopes (\(fresh - fresh / 2) measured, in \(elapsed)); RSS before \(before) KiB, after \(after) KiB (\(after - before >= 0 ? "+" : "")\(after - before) KiB); cached tokens \(cached.count)/\(Self.bound); audit lines \(auditLines)"
            )
        }
    }

    /// 20,000 in the suite (a whole CI run shares two cores); the issue's 100,000 with
    /// `TOKENBROKER_SCOPE_FLOOD=100000` — figures in docs/security.md.
    static let count = ProcessInfo.processInfo.environment["TOKENBROKER_SCOPE_FLOOD"].flatMap { Int($0) } ?? 20_000
}
