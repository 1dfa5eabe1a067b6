import Foundation
import OffPool
import Testing

/// Floods from one uid are cut at that uid; everyone else keeps being answered.
@Suite("Per-uid limits", .serialized)
struct LimitsTests {
    static let wellBehavedUID: UInt32 = 4102

    /// A scenario with one more identity, `any`, that every uid may use.
    private static func withAnyIdentity(extraYAML: String, _ body: (Scenario) async throws -> Void) async throws {
        try await Scenario.run(
            identities: { _, provider in
                [.init(name: "any", tokenFile: provider.endpoints.tokenFile, allow: "[ { any: true } ]")]
            }, extraYAML: extraYAML, body)
    }

    /// Sends `lines` on one connection, pipelined, and reads one answer per line.
    private static func pipelined(_ socket: String, _ lines: [String]) throws -> [Reply] {
        let connection = try UnixSocketConnection(path: socket)
        try connection.send(lines.map { $0 + "\n" }.joined())
        return try lines.map { _ in try connection.readJSONLine() }
    }

    @Test("limits.eventLoopThreads: the daemon serves its socket on exactly that many event loops", arguments: [1, 3])
    func eventLoopThreads(_ threads: Int) async throws {
        try await Self.withAnyIdentity(extraYAML: "limits: { eventLoopThreads: \(threads) }") { scenario in
            let reply = try await scenario.broker.request(#"{"op":"token","identity":"any","scope":"https://storage.azure.com/.default"}"#)
            #expect(reply.ok, "\(reply)")
            // The socket's loops are tokenbroker-<n>; NIO's one loop (token services, compat
            // listeners) is NIO-ELT-<group>-#0; NIO's shared group (never used) NIO-SGLTN-….
            let pid = scenario.broker.process.process.processIdentifier
            let names = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").compactMap {
                try? String(contentsOfFile: "/proc/\(pid)/task/\($0)/comm", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            #expect(names.filter { $0.hasPrefix("tokenbroker-") }.count == threads, "\(names)")
            #expect(names.filter { $0.hasPrefix("NIO-ELT") }.count == 1, "\(names)")
            #expect(!names.contains { $0.hasPrefix("NIO-SGLTN") }, "\(names)")
        }
    }

    @Test("a connection flood from one uid is refused at accept beyond maxConnectionsPerUID; another uid is served")
    func connectionFlood() async throws {
        try await Self.withAnyIdentity(extraYAML: "limits: { maxConnectionsPerUID: 8 }") { scenario in
            try OtherUser.openUp(scenario)
            let socket = scenario.broker.socketPath
            // 100 connections from this (root) process, each asked for a ping.
            var (held, answered) = try await offPool { () -> ([UnixSocketConnection], Int) in
                let connections = try (0..<100).map { _ in try UnixSocketConnection(path: socket, timeoutSeconds: 10) }
                var answered = 0
                for connection in connections {
                    try? connection.send(#"{"op":"ping"}"# + "\n")
                    if (try? connection.readLine()) != nil { answered += 1 }
                }
                return (connections, answered)
            }
            #expect(answered == 8, "exactly the first 8 connections of the uid are served")
            // Meanwhile another uid gets tokens.
            for _ in 0..<3 {
                let reply = try await OtherUser.token(socket, identity: "any", uid: Self.wellBehavedUID)
                #expect(reply.ok, "\(reply)")
            }
            // Root's own next connection is refused while its 8 are open...
            await #expect(throws: (any Error).self) { try await scenario.broker.request(#"{"op":"ping"}"#) }
            // ...and served again once they close.
            held.removeAll()  // closes them
            try await waitUntil("root is served again") { (try? await scenario.broker.request(#"{"op":"ping"}"#))?.ok == true }
            // 92 refusals, but the warning is rate-limited, not one line each.
            let warnings = scenario.broker.process.stderr.components(separatedBy: "too many connections from one uid").count - 1
            #expect((1...3).contains(warnings), "\(warnings) warnings")
        }
    }

    @Test("out of file descriptors: clients wait in the backlog without the daemon spinning, and are served once descriptors free up")
    func outOfDescriptors() async throws {
        try await Self.withAnyIdentity(extraYAML: "limits: { maxConnections: 1000, maxConnectionsPerUID: 1000 }") { scenario in
            let pid = scenario.broker.process.process.processIdentifier
            let socket = scenario.broker.socketPath
            // Room for about 10 more connections than the daemon has descriptors open now.
            let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
            let limit = open + 10
            let lowered = try await runCommand("/usr/bin/prlimit", ["--pid", "\(pid)", "--nofile=\(limit):"])  // the soft limit
            #expect(lowered.status == 0, "\(lowered.stderr)")
            let connections = try await offPool {
                try (0..<40).map { _ in
                    let connection = try UnixSocketConnection(path: socket, timeoutSeconds: 15)
                    try connection.send(#"{"op":"ping","id":1}"# + "\n")
                    return connection
                }
            }
            // Accepting fails now and then: the daemon must wait, not spin on the readable socket.
            try await Task.sleep(for: .milliseconds(300))
            let before = try Self.cpuTicks(pid)
            try await Task.sleep(for: .seconds(1))
            let used = try Self.cpuTicks(pid) - before
            #expect(used < 30, "\(used) clock ticks of CPU in 1 s while out of descriptors")
            // About 10 connections were accepted and answered; each one closed frees a descriptor
            // for the next in the backlog, so reading and closing them in order serves them all.
            let answers = try await offPool {
                try connections.map { connection in
                    defer { connection.close() }
                    return try connection.readJSONLine().ok
                }
            }
            #expect(answers.count == 40 && answers.allSatisfy { $0 })
            let warnings = scenario.broker.process.stderr.components(separatedBy: "cannot accept connections: Too many open files").count - 1
            #expect(warnings == 1, "one warning, not one per retry: \(warnings)")
            #expect(try await scenario.broker.request(#"{"op":"ping"}"#).ok)
        }
    }

    /// User and system CPU time of `pid` so far, in clock ticks.
    private static func cpuTicks(_ pid: Int32) throws -> Int {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
        return Int(fields[11])! + Int(fields[12])!
    }

    @Test("a uid asking for tokens it has no cached token for faster than its rate gets throttled with retryAfter; another uid keeps being answered")
    func requestRate() async throws {
        try await Self.withAnyIdentity(extraYAML: "limits: { requestsPerSecondPerUID: 5, requestBurstPerUID: 10 }") { scenario in
            try OtherUser.openUp(scenario)
            let socket = scenario.broker.socketPath
            // HTTP: 20 misses (new scopes) on one keep-alive connection; the burst is 10.
            let urls = (0..<20).map { "http://localhost/v1/token?scope=https://http-\($0).example/.default&identity=any" }
            let http = try await runCommand("/usr/bin/curl", ["-s", "-i", "--unix-socket", socket] + urls)
            #expect(http.stdout.contains("HTTP/1.1 200 OK"))
            #expect(http.stdout.contains("HTTP/1.1 429 Too Many Requests"))
            #expect(http.stdout.contains("Retry-After: "))
            #expect(http.stdout.contains(#""code":"throttled""#))

            // An NDJSON flood of misses from this uid while another uid asks for tokens.
            let flood = Task {
                try await offPool {
                    try (0..<4).flatMap { connection in
                        try Self.pipelined(
                            socket,
                            (0..<500).map { #"{"op":"token","identity":"any","scope":"https://flood-\#(connection)-\#($0).example/.default"}"# })
                    }
                }
            }
            for _ in 0..<5 {
                let reply = try await OtherUser.token(socket, identity: "any", uid: Self.wellBehavedUID)
                #expect(reply.ok, "the well-behaved uid is answered: \(reply)")
            }
            let replies = try await flood.value
            #expect(replies.count == 2000, "every flooded request is answered")
            let throttled = replies.filter { $0.errorCode == "throttled" }
            #expect(!throttled.isEmpty)
            #expect(throttled.allSatisfy { (($0["error"] as? [String: Any])?["retryAfter"] as? Int ?? 0) >= 1 })
            #expect(throttled.allSatisfy { ($0["error"] as? [String: Any])?["retryable"] as? Bool == true })
            #expect(scenario.broker.process.stderr.contains("audit.outcome=throttled"))
        }
    }
}
