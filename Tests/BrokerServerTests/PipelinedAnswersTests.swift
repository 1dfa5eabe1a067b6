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

    /// A connected socket whose reads and writes give up after 10 s (a bug cannot hang the run).
    private static func connect(_ path: String, sendTimeout: Int = 10) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var receive = timeval(tv_sec: 10, tv_usec: 0)
        var send = timeval(tv_sec: sendTimeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &receive, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(connected == 0, "connect: \(errno)")
        return fd
    }

    /// Writes `bytes` from a thread of its own (the server stops reading while answers
    /// are unread), then ends the connection's input.
    private static func sendInBackground(_ fd: Int32, _ bytes: [UInt8]) -> Thread {
        let thread = Thread {
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                guard n > 0 else { break }
                offset += n
            }
            shutdown(fd, Int32(SHUT_WR))
        }
        thread.start()
        return thread
    }

    /// Reads until the server closes the connection.
    private static func readAll(_ fd: Int32) throws -> [UInt8] {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n == 0 { return received }
            try #require(n > 0, "read: \(errno)")
            received += chunk[..<n]
        }
    }

    private static func line(_ request: BrokerRequest) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        return String(decoding: try encoder.encode(request), as: UTF8.self) + "\n"
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
        let expected = lines.map(Self.expected).joined()
        let request = Array(lines.joined().utf8)
        let received = try await served.run { path in
            let fd = try Self.connect(path)
            defer { close(fd) }
            _ = Self.sendInBackground(fd, request)
            return try Self.readAll(fd)
        }
        #expect(received.count == expected.utf8.count)
        #expect(String(decoding: received, as: UTF8.self) == expected)
        // Remembered answers were repeated, not worked out again: the responder saw each
        // kind of request that is not a repeat, and the first repeatable one.
        #expect(served.responder.requests.filter { $0.scope == repeatable }.count == 1)
    }

    @Test("a client that pipelines without reading is stopped after a bounded amount, then every request it sent is answered in order")
    func slowReaderIsBounded() async throws {
        let served = try Served()
        let line = try Self.line(BrokerRequest(op: "token", id: .number(1), scope: ScriptedResponder.repeatableScope))
        let chunk = Array(String(repeating: line, count: 64 * 1024 / line.utf8.count).utf8)  // whole lines only
        let attempted = 48 * 1024 * 1024
        let (accepted, total, received) = try await served.run { path in
            // Writes give up after 2 s without progress: the server stopped reading.
            let fd = try Self.connect(path, sendTimeout: 2)
            defer { close(fd) }
            var sent = 0
            var stalled: ArraySlice<UInt8> = []
            while sent < attempted {
                let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n > 0 { sent += n }
                if n < chunk.count {
                    stalled = chunk[max(n, 0)...]
                    break
                }
            }
            _ = Self.sendInBackground(fd, Array(stalled))
            return (sent, sent + stalled.count, try Self.readAll(fd))
        }
        // What the server let in: a read batch, the answers it holds (about 64 KiB before it
        // pauses) and the kernel's buffers; never the whole 48 MiB.
        #expect(accepted < 16 * 1024 * 1024, "the server read \(accepted) bytes from a client that reads nothing")
        let lines = total / line.utf8.count
        #expect(received.count == lines * Self.expected(line).utf8.count)
        #expect(String(decoding: received, as: UTF8.self) == String(repeating: Self.expected(line), count: lines))
    }
}
