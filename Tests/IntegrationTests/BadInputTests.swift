import Foundation
import OffPool
import Testing

/// Bad input gets a specific error, and the broker keeps serving everyone else.
@Suite("Bad input on the socket")
struct BadInputTests {
    @Test("malformed JSON gets bad_request and the connection stays usable")
    func malformedJSON() async throws {
        try await Scenario.run { scenario in
            let socket = scenario.broker.socketPath
            // Each line is sent on the same connection; the answers come back in order.
            let lines = [
                "{\"op\":\"token\",",
                #"{"op":"ping","id":2}"#,
                #"{"op":"frobnicate"}"#,
                #"{"op":"token"}"#,
                #"{"op":"token","scope":"x","identity":"nobody-has-this"}"#,
                #"{"op":"token","scope":7,"id":"typed"}"#,
                #"["op","token"]"#,
            ]
            let answers = try await offPool {
                let connection = try UnixSocketConnection(path: socket)
                return try lines.map { line in
                    try connection.send(line + "\n")
                    return try connection.readJSONLine()
                }
            }
            #expect(answers[0].errorCode == "bad_request")
            #expect(answers[0].errorMessage.contains("not valid JSON"))
            #expect(answers[1].ok && answers[1]["id"] as? Int == 2)
            #expect(answers[2].errorCode == "unknown_op")
            #expect(answers[3].errorCode == "bad_request" && answers[3].errorMessage.contains("scope"))
            #expect(answers[4].errorCode == "unknown_identity")
            #expect(answers[5].errorCode == "bad_request" && answers[5].errorMessage.contains("scope"))
            #expect(answers[5]["id"] as? String == "typed", "a bad request still echoes its id")
            #expect(answers[6].errorCode == "bad_request" && answers[6].errorMessage.contains("JSON object"))
        }
    }

    @Test("a 1 MiB line gets too_large and a close; the next client is served")
    func oversizedLine() async throws {
        try await Scenario.run { scenario in
            let socket = scenario.broker.socketPath
            let (answer, afterwards) = try await offPool {
                let connection = try UnixSocketConnection(path: socket)
                let huge = "{\"op\":\"token\",\"scope\":\"" + String(repeating: "a", count: 1 << 20) + "\"}\n"
                // The broker may close before reading everything; a failed write is fine.
                try? connection.send(huge)
                return (try connection.readJSONLine(), try connection.readLine())
            }
            #expect(answer.errorCode == "too_large")
            #expect(afterwards == nil, "the connection is closed")
            #expect(try await scenario.broker.request(#"{"op":"ping"}"#).ok)
        }
    }

    @Test("HTTP garbage and non-protocol bytes get bad_request; the next client is served")
    func httpGarbage() async throws {
        try await Scenario.run { scenario in
            let socket = scenario.broker.socketPath
            let reply = try await offPool {
                let connection = try UnixSocketConnection(path: socket)
                try connection.send("GET /v1/token HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
                return try connection.readToEnd()
            }
            #expect(reply.hasPrefix("HTTP/1.1 400"), "\(reply.prefix(200))")
            #expect(reply.contains("\"bad_request\""))

            // A small head with too many fields is that, not "too large".
            let fields = try await offPool {
                let connection = try UnixSocketConnection(path: socket)
                try connection.send("GET /healthz HTTP/1.1\r\nHost: x\r\n" + String(repeating: "X: y\r\n", count: 300) + "\r\n")
                return try connection.readToEnd()
            }
            #expect(fields.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large"), "\(fields.prefix(200))")
            #expect(fields.contains("more than 256 header fields"), "\(fields.suffix(200))")

            // A TLS ClientHello is neither NDJSON nor HTTP: refused at once, not buffered.
            let tls = try await offPool {
                let connection = try UnixSocketConnection(path: socket)
                try connection.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x0a])
                return try connection.readToEnd()
            }
            #expect(tls.contains("\"bad_request\"") && tls.contains("0x16"), "\(tls.prefix(200))")

            let curl = try await runCommand(
                "/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", socket, "http://localhost/nope"])
            #expect(curl.stdout == "404")
            // A malformed escape or a parameter given twice is refused, not passed on as a scope.
            for (query, reason) in [("scope=%zz%4", "malformed %-escape"), ("scope=a&scope=b", "'scope' is given more than once")] {
                let refused = try await runCommand(
                    "/usr/bin/curl", ["-s", "-w", "\n%{http_code}", "--unix-socket", socket, "http://localhost/v1/token?\(query)"])
                #expect(refused.stdout.hasSuffix("\n400") && refused.stdout.contains(reason), "\(query): \(refused.stdout)")
            }
            #expect(try await scenario.broker.request(#"{"op":"ping"}"#).ok)
        }
    }

    @Test("the CLI's exit codes tell usage, broker and reachability errors apart")
    func cliExitCodes() async throws {
        let missing = try await runCommand(TestEnvironment.cliPath, ["get", "--socket", "/tmp/tbit-no-such/broker.sock", "--scope", "x"])
        #expect(missing.status == 69)
        #expect(missing.stderr.contains("cannot connect"))
        let usage = try await runCommand(TestEnvironment.cliPath, ["get", "--scope", "a", "--resource", "b"])
        #expect(usage.status == 64)
        try await Scenario.run { scenario in
            let denied = try await runCommand(
                TestEnvironment.cliPath, ["get", "--socket", scenario.broker.socketPath, "--scope", "x", "--identity", "ghost"])
            #expect(denied.status == 1)
            #expect(denied.stderr.contains("unknown_identity: no identity named 'ghost'"))
            let header = try await runCommand(
                TestEnvironment.cliPath, ["get", "--socket", scenario.broker.socketPath, "--scope", Scenario.scope, "--output", "header"])
            #expect(header.status == 0 && header.stdout.hasPrefix("Authorization: Bearer ey"))
        }
    }
}

/// A client that writes requests and never reads its answers.
@Suite("Slow readers")
struct SlowReaderTests {
    private func residentKiB(_ pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
    }

    @Test("a client that never reads cannot grow the daemon's memory, and others are still served")
    func neverReadingClientIsPushedBack() async throws {
        try await Scenario.run { scenario in
            let socket = scenario.broker.socketPath
            let pid = scenario.broker.process.process.processIdentifier
            #expect(try await scenario.broker.request(#"{"op":"token","scope":"\#(Scenario.scope)"}"#).ok)
            let before = try residentKiB(pid)
            // Write cached-token requests for a few seconds without reading a byte; the
            // writes stop when the daemon stops reading (the send timeout ends them).
            let written = try await offPool { () -> Int in
                let connection = try UnixSocketConnection(path: socket)
                var timeout = timeval(tv_sec: 1, tv_usec: 0)
                setsockopt(connection.fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                let line = Array((#"{"op":"token","scope":"\#(Scenario.scope)"}"# + "\n").utf8)
                let batch = Array([[UInt8]](repeating: line, count: 1000).joined())
                var total = 0
                let deadline = Date().addingTimeInterval(4)
                while Date() < deadline, (try? connection.send(batch)) != nil { total += 1000 }
                return total
            }
            let after = try residentKiB(pid)
            #expect(try await scenario.broker.request(#"{"op":"ping"}"#).ok, "another client is served meanwhile")
            // Unbounded queuing would hold ~1.4 KiB per request written (tens of MiB here).
            #expect(after - before < 32 * 1024, "RSS grew by \(after - before) KiB for \(written) unread requests")
        }
    }

    @Test("requests held back while their client reads slowly are all answered, in order (NDJSON and HTTP)")
    func heldRequestsAreAnsweredInOrder() async throws {
        try await Scenario.run(logLevel: "info") { scenario in
            let socket = scenario.broker.socketPath
            let count = 6000
            // ~260 KiB of NDJSON answers and ~800 KiB of HTTP ones to one write each: more than
            // a connection queues before the broker holds the rest of a read back.
            let ndjson = (0..<count).map { #"{"op":"ping","id":\#($0)}"# + "\n" }.joined()
            let http = String(repeating: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", count: count)
            for (request, answerEnd) in [(ndjson, "\n"), (http, "\r\n\r\n")] {
                let answers = try await offPool { () -> String in
                    let connection = try UnixSocketConnection(path: socket)
                    defer { connection.close() }
                    let writer = Thread { try? connection.send(request) }
                    writer.start()
                    var received = [UInt8]()
                    var chunk = [UInt8](repeating: 0, count: 4096)
                    var answered = 0
                    var scanned = 0  // where the next answer's end is looked for
                    let end = Array(answerEnd.utf8)
                    while answered < count {
                        usleep(200)  // a slow reader: the broker's queue fills
                        let n = read(connection.fd, &chunk, chunk.count)
                        guard n > 0 else { break }
                        received += chunk[..<n]
                        while scanned + end.count <= received.count {
                            if received[scanned..<scanned + end.count].elementsEqual(end) {
                                answered += 1
                                scanned += end.count
                            } else {
                                scanned += 1
                            }
                        }
                    }
                    return String(decoding: received, as: UTF8.self)
                }
                if answerEnd == "\n" {
                    let ids = answers.split(separator: "\n").compactMap { (try? Reply(String($0)))?["id"] as? Int }
                    let inOrder = ids == Array(0..<count)  // (not in the #expect: it would print 6,000 ids)
                    #expect(inOrder, "NDJSON answers: \(ids.count) of \(count), in order: \(ids.prefix(3))…")
                } else {
                    let statuses = answers.components(separatedBy: "HTTP/1.1 ").dropFirst()
                    #expect(statuses.count == count && statuses.allSatisfy { $0.hasPrefix("200") }, "HTTP answers: \(statuses.count) of \(count)")
                }
            }
        }
    }

    @Test("clients that pipeline two-byte bad lines and never read cannot grow the daemon's memory by what one read is answered with")
    func pipelinedBadLinesAreHeldBack() async throws {
        try await Scenario.run(logLevel: "info") { scenario in
            let socket = scenario.broker.socketPath
            let pid = scenario.broker.process.process.processIdentifier
            #expect(try await scenario.broker.request(#"{"op":"ping"}"#).ok)
            let before = try residentKiB(pid)
            // Each `x\n` is answered with a ~110-byte bad_request: answering a whole read
            // (64 KiB) before looking at the socket queued ~3.5 MB per connection. (More
            // connections only add work: what the daemon serves of them, ~2,400 errors each,
            // is seconds of CPU for a debug build, and the ping below waits its turn.)
            let connections = 8
            let (clients, written) = try await offPool { () -> ([UnixSocketConnection], Int) in
                let clients = try (0..<connections).map { _ in try UnixSocketConnection(path: socket) }
                for client in clients {
                    try client.send(#"{"op":"ping"}"# + "\n")  // NDJSON: the first byte decides
                    _ = fcntl(client.fd, F_SETFL, fcntl(client.fd, F_GETFL) | O_NONBLOCK)
                }
                let chunk = Array([[UInt8]](repeating: Array("x\n".utf8), count: 32 * 1024).joined())
                var sent = [Int](repeating: 0, count: connections)
                // Until no client's socket has taken a byte for half a second.
                var lastProgress = Date()
                let deadline = Date().addingTimeInterval(8)
                while Date() < deadline, Date().timeIntervalSince(lastProgress) < 0.5 {
                    for (index, client) in clients.enumerated() {
                        let start = sent[index] % 2  // keep the stream whole lines after a partial send
                        let count = chunk[start...].withUnsafeBytes { Glibc.send(client.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                        if count > 0 {
                            sent[index] += count
                            lastProgress = Date()
                        }
                    }
                    usleep(1000)
                }
                return (clients, sent.reduce(0, +))
            }
            defer { clients.forEach { $0.close() } }
            #expect(try await scenario.broker.request(#"{"op":"ping"}"#).ok, "another client is served")
            // What the daemon read is answered (or held) by now; its memory settles.
            var after = try residentKiB(pid)
            for _ in 0..<50 {
                try await Task.sleep(for: .milliseconds(200))
                let now = try residentKiB(pid)
                defer { after = now }
                if abs(now - after) < 512 { break }
            }
            // Held back, a connection holds at most a read and ~128 KiB of answers.
            #expect(after - before < 16 * 1024, "RSS grew by \(after - before) KiB for \(written / 2) unread lines on \(connections) connections")
        }
    }
}
