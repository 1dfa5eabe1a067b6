import Foundation
import Glibc
import Logging
import NIOCore
import OffPool
import Testing
import TokenBrokerProtocol

@testable import BrokerServer

/// Pipelined NDJSON on a real Unix socket (the epoll transport): the answers of a read
/// batch go out gathered in one buffer (`AnswerBatch`); these pin what that could break.
@Suite struct PipelinedAnswers {
    /// A server on a socket in a fresh `/tmp/tb-XXXXXX` (socket paths are limited to 107 bytes).
    private struct Served {
        let responder = ScriptedResponder()
        let server: UnixBrokerServer
        let directory: String
        var path: String { "\(directory)/broker.sock" }

        init() throws {
            var template = Array("/tmp/tb-XXXXXX".utf8CString)
            directory = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
            var configuration = UnixServerConfiguration()
            configuration.socketPath = "\(directory)/broker.sock"
            server = UnixBrokerServer(
                configuration: configuration, responder: responder, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        }

        /// Serves while `body` runs on a thread of its own (given the socket's path); returns what it returns.
        func run<T: Sendable>(_ body: @escaping @Sendable (String) throws -> T) async throws -> T {
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try await server.bind()
            let server = self.server
            let runner = Task { try await server.run() }
            let path = self.path
            let result: T
            do {
                result = try await offPool { try body(path) }
            } catch {
                runner.cancel()
                _ = try? await runner.value
                throw error
            }
            runner.cancel()
            try await runner.value
            return result
        }
    }

    private struct ClientError: Error, CustomStringConvertible {
        let description: String
    }

    /// The suite runs on two cores and may starve the server's start (it needs the
    /// cooperative pool) for tens of seconds: the client waits up to this long for progress.
    private static let patience: Duration = .seconds(120)

    /// A connected socket whose reads and writes wait at most 1 s each (then `EAGAIN`).
    private static func connect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var second = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &second, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &second, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw ClientError(description: "connect: \(errno)")
        }
        return fd
    }

    /// Writes all of `bytes`, waiting (up to `patience`) while the server does not read.
    private static func sendAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        let started = ContinuousClock.now
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                offset += n
            } else if n < 0, errno == EAGAIN || errno == EINTR, ContinuousClock.now - started < patience {
                continue
            } else {
                return false
            }
        }
        return true
    }

    /// Writes `bytes` from a thread of its own (the server stops reading while answers
    /// are unread), then ends the connection's input.
    private static func sendInBackground(_ fd: Int32, _ bytes: ArraySlice<UInt8>) {
        Thread {
            _ = sendAll(fd, bytes)
            shutdown(fd, Int32(SHUT_WR))
        }.start()
    }

    /// Reads until the server closes the connection (or nothing comes for `patience`).
    private static func readAll(_ fd: Int32) throws -> [UInt8] {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var lastProgress = ContinuousClock.now
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n == 0 { return received }
            if n > 0 {
                received += chunk[..<n]
                lastProgress = .now
            } else if errno != EAGAIN && errno != EINTR || ContinuousClock.now - lastProgress > patience {
                throw ClientError(description: "read: \(errno) after \(received.count) bytes")
            }
        }
    }

    /// Reads one line.
    private static func readLine(_ fd: Int32) throws -> String {
        var received: [UInt8] = []
        var byte: UInt8 = 0
        let started = ContinuousClock.now
        while received.last != UInt8(ascii: "\n") {
            let n = read(fd, &byte, 1)
            if n == 1 {
                received.append(byte)
            } else if n == 0 || errno != EAGAIN && errno != EINTR || ContinuousClock.now - started > patience {
                throw ClientError(description: "read: \(n == 0 ? "closed" : "errno \(errno)")")
            }
        }
        return String(decoding: received, as: UTF8.self)
    }

    private static func line(_ request: BrokerRequest) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        return String(decoding: try encoder.encode(request), as: UTF8.self) + "\n"
    }

    /// Sends `lines` on one connection in the background and expects, byte for byte, the
    /// answer the general way gives each, in order.
    private static func pipeline(_ lines: [String], to served: Served) async throws {
        let expected = lines.map(Self.expected).joined()
        let request = Array(lines.joined().utf8)
        let received = try await served.run { path in
            let fd = try Self.connect(path)
            defer { close(fd) }
            Self.sendInBackground(fd, request[...])
            return try Self.readAll(fd)
        }
        #expect(received.count == expected.utf8.count)
        #expect(String(decoding: received, as: UTF8.self) == expected)
    }

    /// The answer the handler gives `line`, encoded the general way (no memo, no batch).
    private static func expected(_ line: String) -> String {
        let response: BrokerResponse =
            switch WireCoding.decodeRequest(ByteBuffer(string: String(line.dropLast()))) {
            case .success(let request): ScriptedResponder.answer(request)
            case .failure(let failure): .failure(id: failure.id, failure.error)
            }
        return String(decoding: response.jsonBytes(), as: UTF8.self) + "\n"
    }

    @Test("thousands of pipelined requests, remembered, new-id, failing, malformed and waiting on an exchange, are answered in order, byte for byte")
    func mixedPipelineInOrder() async throws {
        let served = try Served()
        let repeatable = ScriptedResponder.repeatableScope
        var lines: [String] = []
        let same = try Self.line(BrokerRequest(op: "token", id: .string("same"), scope: repeatable))
        for index in 0..<3000 {
            let id = RequestID.number(Int64(index))
            switch index % 10 {
            case 0: lines.append(same)  // the very line remembered: the memo's bytes as they are
            case 1: lines.append(try Self.line(BrokerRequest(op: "ping", id: id)))
            case 2: lines.append(try Self.line(BrokerRequest(op: "token", id: id, scope: ScriptedResponder.throttledScope)))
            case 3: lines.append(#"{"op":"token","id":\#(index),"scope":}"# + "\n")  // malformed, id still echoed
            case 4 where index % 100 == 4: lines.append(try Self.line(BrokerRequest(op: "token", id: id, scope: ScriptedResponder.missScope)))
            case 5: lines.append(try Self.line(BrokerRequest(op: "token", id: .string(#"needs "escaping" \#(index)"#), scope: repeatable)))
            case 6: lines.append(try Self.line(BrokerRequest(op: "token", id: nil, scope: repeatable)))  // the memo without an id
            default: lines.append(try Self.line(BrokerRequest(op: "token", id: id, scope: repeatable)))  // a new id spliced in
            }
        }
        try await Self.pipeline(lines, to: served)
        // Remembered answers were repeated, not worked out again: the responder saw each
        // kind of request that is not a repeat, and the first repeatable one.
        #expect(served.responder.requests.filter { $0.scope == repeatable }.count == 1)
    }

    @Test("runs of the very same line, longer than a batch, behind an exchange and between other requests, are answered in order, each accounted for")
    func runsOfTheSameLine() async throws {
        let served = try Served()
        let repeatable = ScriptedResponder.repeatableScope
        let same = try Self.line(BrokerRequest(op: "token", scope: repeatable))
        let sameWithID = try Self.line(BrokerRequest(op: "token", id: .string("7"), scope: repeatable))
        let ping = try Self.line(BrokerRequest(op: "ping", id: .number(1)))
        let miss = try Self.line(BrokerRequest(op: "token", id: .number(2), scope: ScriptedResponder.missScope))
        // The first `same` is worked out and remembered; every later repeatable line is a repeat.
        let runs: [(String, Int)] = [(same, 3001), (ping, 1), (same, 7), (miss, 1), (same, 30), (sameWithID, 5), (sameWithID, 1), (same, 400)]
        let lines = runs.flatMap { Array(repeating: $0.0, count: $0.1) }
        try await Self.pipeline(lines, to: served)
        let repeats = runs.filter { $0.0 != ping && $0.0 != miss }.map(\.1).reduce(0, +) - 1
        #expect(served.responder.requests.filter { $0.scope == repeatable }.count == 1)
        #expect(served.responder.repeats.renewals == repeats, "each repeated answer is accounted for")
        // Behind the exchange (most likely pending while the rest of the read is served) each
        // repeat waits its turn on its own; the 3,007 before it go as runs, a batch's worth each.
        let behindTheMiss = 30 + 5 + 1 + 400
        let calls = served.responder.repeats.calls
        #expect(calls <= behindTheMiss + 20, "runs are renewed as runs: \(calls) calls for \(repeats) repeats")
    }

    @Test("a client that pipelines without reading is stopped after a bounded amount, then every request it sent is answered in order")
    func slowReaderIsBounded() async throws {
        let served = try Served()
        let line = try Self.line(BrokerRequest(op: "token", id: .number(1), scope: ScriptedResponder.repeatableScope))
        let chunk = Array(String(repeating: line, count: 64 * 1024 / line.utf8.count).utf8)  // whole lines only
        let attempted = 48 * 1024 * 1024
        let (pong, accepted, total, received) = try await served.run { path in
            let fd = try Self.connect(path)
            defer { close(fd) }
            // The server is serving this connection (its start may wait for the pool)...
            let ping = Array(#"{"op":"ping"}"#.utf8) + [UInt8(ascii: "\n")]
            guard Self.sendAll(fd, ping[...]) else { throw ClientError(description: "ping: \(errno)") }
            let pong = try Self.readLine(fd)
            // ...and then reads no more once two writes in a row (1 s each) make no progress.
            var sent = 0
            var timeouts = 0
            while sent < attempted, timeouts < 2 {
                let n = chunk[(sent % chunk.count)...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    sent += n
                    timeouts = 0
                } else if n < 0, errno == EAGAIN {
                    timeouts += 1
                } else if n < 0, errno != EINTR {
                    throw ClientError(description: "write: \(errno)")
                }
            }
            let stalled = chunk[(sent % chunk.count)...]  // the rest of the last chunk: whole lines
            Self.sendInBackground(fd, stalled)
            return (pong, sent, sent + stalled.count, try Self.readAll(fd))
        }
        // What the server let in: a read batch, the answers it holds (about 64 KiB before it
        // pauses) and the kernel's buffers; never the whole 48 MiB.
        #expect(pong == #"{"ok":true}"# + "\n")
        #expect(accepted < 16 * 1024 * 1024, "the server read \(accepted) bytes from a client that reads nothing")
        let lines = total / line.utf8.count
        #expect(received.count == lines * Self.expected(line).utf8.count)
        #expect(String(decoding: received, as: UTF8.self) == String(repeating: Self.expected(line), count: lines))
    }
}
