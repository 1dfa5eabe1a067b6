import Foundation
import OffPool
import Testing

/// `limits.requestsPerSecondPerUID` charges only what makes upstream work: a uid whose
/// bucket is empty still gets its cached tokens, on the socket and the compat endpoints.
@Suite("Cached answers and the per-uid bucket")
struct CachedAnswerLimitTests {
    /// curl over the compat socket with the IMDS header, one URL per resource; the status codes.
    private static func imds(_ compatSocket: String, resources: [String]) async throws -> [String] {
        let transfers = resources.flatMap {
            ["-o", "/dev/null", "http://localhost/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\($0)"]
        }
        let result = try await runCommand(
            "/usr/bin/curl", ["-s", "--unix-socket", compatSocket, "-H", "Metadata: true", "-w", "%{http_code}\n"] + transfers)
        return result.stdout.split(separator: "\n").map(String.init)
    }

    @Test(
        "with a bucket of 3 emptied by misses, 1,000 cached requests on the socket and 300 on a compat endpoint are all answered; misses are throttled"
    )
    func cachedAnswersAreNeverThrottled() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let compatSocket = "\(directory)/compat.sock"
        try await Scenario.run(
            logLevel: "info",
            extraYAML: """
                compat: { tcp: "127.0.0.1:0", unix: \(compatSocket), identityHeaderFile: \(directory)/identity-header }
                limits: { requestsPerSecondPerUID: 1, requestBurstPerUID: 3 }
                """
        ) { scenario in
            let socket = scenario.broker.socketPath
            let cached = #"{"op":"token","scope":"\#(Scenario.scope)"}"#
            #expect(try await scenario.broker.request(cached).ok, "the first request fills the cache")

            // Misses in one write, new scopes and a minimum the cached token cannot meet
            // (forced refreshes): beyond the burst, throttled.
            let misses = try await offPool {
                let connection = try UnixSocketConnection(path: socket)
                defer { connection.close() }
                let lines = (0..<12).map { index in
                    index % 2 == 0
                        ? #"{"op":"token","scope":"https://miss-\#(index).example/.default"}"#
                        : #"{"op":"token","scope":"\#(Scenario.scope)","minValiditySeconds":86400}"#
                }
                try connection.send(lines.map { $0 + "\n" }.joined())
                return try lines.map { _ in try connection.readJSONLine() }
            }
            let throttled = misses.filter { $0.errorCode == "throttled" }
            #expect(throttled.count >= 6, "\(misses.map { $0.errorCode ?? "ok" })")
            #expect(throttled.allSatisfy { ($0["error"] as? [String: Any])?["retryAfter"] as? Int ?? 0 >= 1 })

            // The bucket is empty; cached answers are not charged to it. Socket: four
            // connections of 250 pipelined requests (first answers, then repeats).
            let socketAnswers = try await offPool {
                try (0..<4).flatMap { _ in
                    let connection = try UnixSocketConnection(path: socket)
                    defer { connection.close() }
                    try connection.send(String(repeating: cached + "\n", count: 250))
                    return try (0..<250).map { _ in try connection.readJSONLine().errorCode ?? "ok" }
                }
            }
            #expect(socketAnswers.count == 1000 && socketAnswers.allSatisfy { $0 == "ok" }, "\(Set(socketAnswers))")
            let compatAnswers = try await Self.imds(compatSocket, resources: Array(repeating: "https://storage.azure.com", count: 300))
            #expect(compatAnswers.count == 300 && compatAnswers.allSatisfy { $0 == "200" }, "\(Set(compatAnswers))")

            // The compat endpoint's misses share the bucket: throttled (429).
            let compatMisses = try await Self.imds(compatSocket, resources: (0..<12).map { "https://compat-miss-\($0).example" })
            #expect(compatMisses.contains("429") && compatMisses.allSatisfy { $0 == "200" || $0 == "429" }, "\(compatMisses)")
            #expect(try await scenario.broker.request(cached).ok)
        }
    }
}
