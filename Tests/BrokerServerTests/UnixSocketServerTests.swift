import Foundation
import Glibc
import Logging
import NIOCore
import NIOPosix
import OffPool
import TestRandom
import Testing
import TokenBrokerProtocol

@testable import BrokerServer

/// A short-pathed temporary directory (`/tmp/tb-XXXXXX`): socket paths are limited to 107 bytes.
private struct ShortTemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/tb-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { throw SocketTestError("mkdtemp: \(errno)") }
        path = String(cString: made)
    }

    var socketPath: String { "\(path)/broker.sock" }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

private struct SocketTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Minimal blocking Unix-socket client and helpers, with timeouts so a bug cannot hang the run.
private enum UnixSocket {
    static func address(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8))
            raw[path.utf8.count] = 0
        }
        return address
    }

    static func withAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var address = address(path)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// Leaves a socket file behind with nobody listening, as a crashed daemon does.
    static func makeStale(at path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        guard withAddress(path, { bind(fd, $0, $1) }) == 0 else { throw SocketTestError("bind \(path): \(errno)") }
    }

    /// Connects, sends `request`, half-closes, and reads until the server closes.
    static func roundTrip(_ path: String, _ request: String) throws -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard withAddress(path, { connect(fd, $0, $1) }) == 0 else { throw SocketTestError("connect \(path): \(errno)") }
        let bytes = Array(request.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else { throw SocketTestError("write: \(errno)") }
        shutdown(fd, Int32(SHUT_WR))
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n == 0 { break }
            guard n > 0 else { throw SocketTestError("read: \(errno)") }
            received += chunk[..<n]
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// A connected socket (reads time out after 10 s); the caller closes it.
    static func connected(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard withAddress(path, { connect(fd, $0, $1) }) == 0 else {
            close(fd)
            throw SocketTestError("connect \(path): \(errno)")
        }
        return fd
    }

    /// Sends one request line and reads its one answer line.
    static func exchangeLine(_ fd: Int32, _ request: String) throws -> String {
        try send(fd, request + "\n")
        return try readLine(fd)
    }

    static func send(_ fd: Int32, _ text: String) throws {
        let bytes = Array(text.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else { throw SocketTestError("write: \(errno)") }
    }

    /// Reads one line (with its `\n`).
    static func readLine(_ fd: Int32) throws -> String {
        var received: [UInt8] = []
        var byte: UInt8 = 0
        while received.last != UInt8(ascii: "\n") {
            let n = read(fd, &byte, 1)
            guard n == 1 else { throw SocketTestError(n == 0 ? "closed by the server" : "read: \(errno)") }
            received.append(byte)
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// Connects, sends `partial` without ending it, and waits (10 s at most) for the server to close.
    static func sendAndAwaitClose(_ path: String, _ partial: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard withAddress(path, { connect(fd, $0, $1) }) == 0 else { throw SocketTestError("connect \(path): \(errno)") }
        let bytes = Array(partial.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else { throw SocketTestError("write: \(errno)") }
        var chunk = [UInt8](repeating: 0, count: 512)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n == 0 { return }
            if n < 0 { throw SocketTestError(errno == EAGAIN ? "still open after 10 s" : "read: \(errno)") }
        }
    }

    static func fileMode(_ path: String) -> mode_t? {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode : nil
    }
}

/// A Unix-socket server (on the broker's own loops: no NIO group), torn down by `stop()`.
private struct RunningServer {
    let responder = ScriptedResponder()
    let server: UnixBrokerServer

    init(path: String, configure: (inout UnixServerConfiguration) -> Void = { _ in }) {
        var configuration = UnixServerConfiguration()
        configuration.socketPath = path
        configuration.limits.drainTimeout = .seconds(5)
        configure(&configuration)
        server = UnixBrokerServer(
            configuration: configuration, responder: responder, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    func start() async throws -> Task<Void, any Error> {
        try await server.bind()
        let server = self.server
        return Task { try await server.run() }
    }

    func stop(_ runner: Task<Void, any Error>) async throws {
        runner.cancel()
        try await runner.value
    }
}

@Suite struct UnixSocketServer {
    @Test func servesBothProtocolsWithMode0660AndRemovesTheSocketOnShutdown() async throws {
        let directory = try ShortTemporaryDirectory()
        defer { directory.remove() }
        let running = RunningServer(path: directory.socketPath)
        let runner = try await running.start()

        let mode = try #require(UnixSocket.fileMode(directory.socketPath))
        #expect(mode & S_IFMT == S_IFSOCK)
        #expect(mode & 0o7777 == 0o660)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["broker.sock"])  // no temporary left

        let ndjson = try UnixSocket.roundTrip(directory.socketPath, #"{"op":"ping","id":1}"# + "\n" + #"{"op":"token","scope":"s","id":2}"#)
        #expect(try responses(in: ndjson).map(\.id) == [.number(1), .number(2)])
        let http = try UnixSocket.roundTrip(directory.socketPath, "GET /v1/token?scope=s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        #expect(http.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(RawHTTPResponse.parseAll(http).first?.json?.token == ScriptedResponder.token(for: "s"))

        // SO_PEERCRED names this very process, and the attestation read its groups, executable and cgroup.
        let expected = PeerCredentials(
            pid: getpid(), uid: getuid(), gid: getgid(), supplementaryGroups: ProcessFacts.supplementaryGroups(),
            executable: ProcessFacts.executable(), executableFile: FileIdentity(path: "/proc/self/exe"), cgroup: ProcessFacts.cgroup())
        #expect(expected.executable != nil && expected.executableFile != nil && expected.cgroup != nil)
        #expect(
            running.responder.peers.allSatisfy { $0 == expected },
            "\(running.responder.peers.first.map { "\($0.executable ?? "-") \($0.cgroup ?? "-") \($0.supplementaryGroups ?? [])" } ?? "")")
        #expect(running.responder.peers.count == 3)

        try await running.stop(runner)
        #expect(UnixSocket.fileMode(directory.socketPath) == nil)
    }

    @Test func aStaleSocketIsReplaced() async throws {
        let directory = try ShortTemporaryDirectory()
        defer { directory.remove() }
        try UnixSocket.makeStale(at: directory.socketPath)
        #expect(!UnixSocketPath.isListening(directory.socketPath))
        let running = RunningServer(path: directory.socketPath)
        let runner = try await running.start()
        #expect(UnixSocketPath.isListening(directory.socketPath))
        #expect((UnixSocket.fileMode(directory.socketPath) ?? 0) & 0o777 == 0o660)
        try await running.stop(runner)
        #expect(UnixSocket.fileMode(directory.socketPath) == nil)
    }

    @Test func aLiveSocketIsNotTakenOver() async throws {
        let directory = try ShortTemporaryDirectory()
        defer { directory.remove() }
        let first = RunningServer(path: directory.socketPath)
        let runner = try await first.start()
        let second = RunningServer(path: directory.socketPath)
        let error = await #expect(throws: BrokerServerError.self) { try await second.server.bind() }
        #expect(error?.code == .socketPathInUse)
        #expect(error?.message.contains(directory.socketPath) == true)
        #expect(try UnixSocket.roundTrip(directory.socketPath, #"{"op":"ping","id":1}"#).contains(#""ok":true"#))  // still the first one's
        try await first.stop(runner)
    }

    @Test func aRegularFileAtThePathIsNotReplaced() async throws {
        let directory = try ShortTemporaryDirectory()
        defer { directory.remove() }
        try Data("precious".utf8).write(to: URL(fileURLWithPath: directory.socketPath))
        let running = RunningServer(path: directory.socketPath)
        let error = await #expect(throws: BrokerServerError.self) { try await running.server.bind() }
        #expect(error?.code == .socketPathInUse)
        #expect(try String(contentsOfFile: directory.socketPath, encoding: .utf8) == "precious")
    }

    @Test func aWorldWritableDirectoryWithoutStickyBitIsRefused() async throws {
        let directory = try ShortTemporaryDirectory()
        defer { directory.remove() }
        chmod(directory.path, 0o777)
        let running = RunningServer(path: directory.socketPath)
        let error = await #expect(throws: BrokerServerError.self) { try await running.server.bind() }
        #expect(error?.code == .unsafeSocketDirectory)
        #expect(UnixSocket.fileMode(directory.socketPath) == nil)
    }

    @Test func missingParentDirectoriesAreCreated() async throws {
        let directory = try ShortTemporaryDirectory()
        defer { directory.remove() }
        let path = "\(directory.path)/run/tb/broker.sock"
        let running = RunningServer(path: path)
        let runner = try await running.start()
        #expect(UnixSocketPath.isListening(path))
        try await running.stop(runner)
        #expect(UnixSocket.fileMode(path) == nil)
    }

    /// `requestReadTimeout` promises that a request still incomplete after it closes the
    /// connection. A client that sends half a line and stalls must be let go well before
    /// the 60 s idle timeout (this test gives up after 10 s).
    @Test func aStalledPartialRequestIsClosedAfterTheReadTimeout() async throws {
        let directory = try ShortTemporaryDirectory()
        defer { directory.remove() }
        let running = RunningServer(path: directory.socketPath) { $0.limits.requestReadTimeout = .milliseconds(200) }
        let runner = try await running.start()
        let outcome = Result { try UnixSocket.sendAndAwaitClose(directory.socketPath, #"{"op":"pi"#) }
        #expect(throws: Never.self) { try outcome.get() }
        try await running.stop(runner)
    }

    /// The read deadline is per request: a client that pipelines without pause, every
    /// write finishing one request and starting the next, is never cut off, although no
    /// read ever ends between requests.
    @Test func aPipelinerWhoseReadsAlwaysEndMidRequestIsNotTimedOut() async throws {
        let directory = try ShortTemporaryDirectory()
        defer { directory.remove() }
        let running = RunningServer(path: directory.socketPath) { $0.limits.requestReadTimeout = .milliseconds(300) }
        let runner = try await running.start()
        let fd = try UnixSocket.connected(directory.socketPath)
        defer { close(fd) }
        func send(_ text: String) throws { try UnixSocket.send(fd, text) }
        func readLine() throws -> String { try UnixSocket.readLine(fd) }
        try send(#"{"op":"ping","id":0}"# + "\n" + #"{"op":"pi"#)
        #expect(try readLine().contains(#""id":0"#))
        let started = ContinuousClock.now
        var id = 1
        // Well past three read timeouts; the gap is slept on this thread.
        while ContinuousClock.now - started < .milliseconds(1200) {
            usleep(50_000)
            try send(#"ng","id":\#(id)}"# + "\n" + #"{"op":"pi"#)
            #expect(try readLine().contains(#""id":\#(id)"#))
            id += 1
        }
        try send(#"ng","id":\#(id)}"# + "\n")
        #expect(try readLine().contains(#""id":\#(id)"#))
        try await running.stop(runner)
    }

    /// A request refused as malformed ends the read deadline: its 400 may wait behind a
    /// slow answer for longer than the deadline, and the client must get both, in order,
    /// rather than a 408 pushed ahead of the first.
    @Test func aRefusedRequestWaitingBehindASlowOneIsNotTimedOut() async throws {
        let directory = try ShortTemporaryDirectory()
        defer { directory.remove() }
        let running = RunningServer(path: directory.socketPath) { $0.limits.requestReadTimeout = .seconds(1) }
        let runner = try await running.start()
        let responder = running.responder
        let path = directory.socketPath
        // The client runs on a thread of its own: the slow answer needs the cooperative pool.
        let received = try await offPool { () throws -> [UInt8] in
            let fd = try UnixSocket.connected(path)
            defer { close(fd) }
            // The malformed head begins in one read and ends in the next.
            try UnixSocket.send(fd, "GET /v1/token?scope=\(ScriptedResponder.slowScope) HTTP/1.1\r\nHost: x\r\n\r\nGE")
            usleep(100_000)
            try UnixSocket.send(fd, "T / HTTP/9.9\r\n\r\n")
            usleep(1_500_000)  // past the read deadline of the head begun in the first read
            responder.openGate()
            var received: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            // The slow answer comes from a task: in a full parallel run the cooperative pool
            // can be busy for tens of seconds, so a read timeout is waited through (to a bound).
            let deadline = ContinuousClock.now + .seconds(120)
            while true {
                let n = read(fd, &chunk, chunk.count)
                if n < 0, errno == EAGAIN || errno == EINTR, ContinuousClock.now < deadline { continue }
                guard n > 0 else { break }
                received += chunk[..<n]
            }
            return received
        }
        let replies = RawHTTPResponse.parseAll(String(decoding: received, as: UTF8.self))
        #expect(replies.map(\.status) == [200, 400], "\(replies.map(\.body))")
        try await running.stop(runner)
    }

    /// `idleTimeout`: a connection on which nothing happens is closed; one that keeps
    /// asking, for longer than the timeout in all, is not.
    @Test func anIdleConnectionIsClosedAndABusyOneIsNot() async throws {
        let directory = try ShortTemporaryDirectory()
        defer { directory.remove() }
        let running = RunningServer(path: directory.socketPath) { $0.limits.idleTimeout = .seconds(1) }
        let runner = try await running.start()
        let busy = try UnixSocket.connected(directory.socketPath)
        defer { close(busy) }
        let started = ContinuousClock.now
        var answers = 0
        // A request every 50 ms until well past two idle timeouts. The gap is slept on this
        // thread (not `Task.sleep`): a busy cooperative pool must not stretch it past the timeout.
        while ContinuousClock.now - started < .milliseconds(2500) {
            let answer = try UnixSocket.exchangeLine(busy, #"{"op":"ping","id":\#(answers)}"#)
            #expect(answer.contains(#""ok":true"#))
            answers += 1
            usleep(50_000)
        }
        #expect(answers > 10)
        // Nothing sent at all: closed by the server.
        #expect(throws: Never.self) { try UnixSocket.sendAndAwaitClose(directory.socketPath, "") }
        try await running.stop(runner)
    }

    /// `run()` listens by itself; when it cannot, both `run()` and `waitUntilListening()` say why.
    @Test func runReportsAFailedBind() async throws {
        let directory = try ShortTemporaryDirectory()
        defer { directory.remove() }
        let blocker = "\(directory.path)/not-a-socket"
        _ = FileManager.default.createFile(atPath: blocker, contents: Data("x".utf8))
        let running = RunningServer(path: blocker)
        let error = await #expect(throws: BrokerServerError.self) { try await running.server.run() }
        #expect(error?.code == .socketPathInUse)
        await #expect(throws: BrokerServerError.self) { try await running.server.waitUntilListening() }
    }
}

/// The broker's own event loop (`EpollLoop`, `EpollConnection`) under clients that misbehave
/// at the socket level, and under many at once.
@Suite struct EpollTransport {
    /// The server's open connections once they reach 0, or after 60 s. A deadline, not a
    /// count of sleeps: in the full suite on two cores the loops and the pool can be starved
    /// for tens of seconds (a count of 250 × 20 ms once gave up with connections still
    /// closing, in CI), and a connection that never closes still fails the test.
    private func waitForNoConnections(_ server: UnixBrokerServer) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(60)
        while server.openConnections > 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        return server.openConnections
    }

    @Test("clients that pipeline hundreds of requests, read nothing and vanish are closed; the next client is served")
    func clientsThatVanishWithAnswersQueued() async throws {
        let directory = try ShortTemporaryDirectory()
        defer { directory.remove() }
        let running = RunningServer(path: directory.socketPath)
        let runner = try await running.start()
        let path = directory.socketPath
        // Answers of ~1 KiB (the token echoes the scope): 400 of them are more than the
        // socket holds, so the server queues them, stops reading, and then finds the peer
        // gone (ECONNRESET or EPOLLHUP) with bytes still queued.
        let line = #"{"op":"token","scope":"\#(String(repeating: "x", count: 1000))","id":7}"# + "\n"
        try await offPool {
            for _ in 0..<8 {
                let fd = try UnixSocket.connected(path)
                var timeout = timeval(tv_sec: 2, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                let bytes = Array(String(repeating: line, count: 400).utf8)
                _ = write(fd, bytes, bytes.count)  // as much as the server takes before it stops reading
                usleep(20_000)
                close(fd)
            }
        }
        #expect(try await waitForNoConnections(running.server) == 0)
        let answer = try await offPool { try UnixSocket.roundTrip(path, #"{"op":"ping","id":1}"#) }
        #expect(try responses(in: answer) == [BrokerResponse(id: .number(1), ok: true)])
        try await running.stop(runner)
    }

    @Test("two event loops: 16 clients pipelining 100 requests each get their own answers, in order")
    func manyClientsOnTwoLoops() async throws {
        let directory = try ShortTemporaryDirectory()
        defer { directory.remove() }
        let running = RunningServer(path: directory.socketPath) { $0.eventLoopThreads = 2 }
        let runner = try await running.start()
        let path = directory.socketPath
        try await withThrowingTaskGroup(of: (Int, [RequestID?]).self) { group in
            for client in 0..<16 {
                group.addTask {
                    try await offPool {
                        let fd = try UnixSocket.connected(path)
                        defer { close(fd) }
                        let lines = (0..<100).map { index in
                            index % 3 == 0
                                ? #"{"op":"ping","id":\#(client * 1000 + index)}"# : #"{"op":"token","scope":"s","id":\#(client * 1000 + index)}"#
                        }
                        try UnixSocket.send(fd, lines.joined(separator: "\n") + "\n")
                        return (
                            client,
                            try (0..<100).map { _ in try JSONDecoder().decode(BrokerResponse.self, from: Data(UnixSocket.readLine(fd).utf8)).id }
                        )
                    }
                }
            }
            var clients = 0
            for try await (client, ids) in group {
                #expect(ids == (0..<100).map { RequestID.number(Int64(client * 1000 + $0)) })
                clients += 1
            }
            #expect(clients == 16)
        }
        #expect(try await waitForNoConnections(running.server) == 0)
        try await running.stop(runner)
    }
}

@Suite struct EpollTimers {
    /// What the timers' bodies did, in order.
    private final class Log: @unchecked Sendable {
        var values: [UInt64] = []
    }

    @Test("timers come due in deadline order; a cancelled one never runs")
    func order() {
        var queue = TimerQueue()
        let log = Log()
        _ = queue.add(300) { log.values.append(3) }
        let cancelled = queue.add(150) { log.values.append(99) }
        _ = queue.add(100) { log.values.append(1) }
        _ = queue.add(200) { log.values.append(2) }
        queue.cancel(cancelled)
        #expect(queue.timeoutMilliseconds(now: 0) == 1)  // 100 ns, rounded up to a millisecond
        while let body = queue.takeNextDue(now: 250) { body() }
        #expect(log.values == [1, 2])
        #expect(queue.timeoutMilliseconds(now: 250) == 1)
        while let body = queue.takeNextDue(now: 1_000) { body() }
        #expect(log.values == [1, 2, 3])
        #expect(queue.timeoutMilliseconds(now: 1_000) == -1)
    }

    @Test("a due timer cancelled by the body of another due at the same moment does not run")
    func cancelledWhileDue() {
        var queue = TimerQueue()
        let log = Log()
        _ = queue.add(100) { log.values.append(1) }
        let second = queue.add(200) { log.values.append(2) }
        queue.takeNextDue(now: 300)?()
        queue.cancel(second)  // what the first body does through its loop (a close cancelling the guard's timer)
        #expect(queue.takeNextDue(now: 300) == nil)
        #expect(log.values == [1])
    }

    @Test("the first timer, once asked about, is still skipped when it is cancelled later, and a new earlier one is seen")
    func firstCancelledAfterItWasAskedAbout() {
        var queue = TimerQueue()
        let log = Log()
        let first = queue.add(1_000_000) { log.values.append(1) }
        _ = queue.add(5_000_000) { log.values.append(5) }
        #expect(queue.timeoutMilliseconds(now: 0) == 1)
        queue.cancel(first)
        #expect(queue.timeoutMilliseconds(now: 0) == 5)
        _ = queue.add(2_000_000) { log.values.append(2) }
        #expect(queue.timeoutMilliseconds(now: 0) == 2)
        while let body = queue.takeNextDue(now: 10_000_000) { body() }
        #expect(log.values == [2, 5])
        #expect(queue.timeoutMilliseconds(now: 10_000_000) == -1)
    }

    @Test("a thousand timers in random order come due sorted")
    func heap() {
        var queue = TimerQueue()
        var random = SeededRandom()
        var deadlines = (0..<1000).map { _ in UInt64.random(in: 1...1_000_000, using: &random) }
        let due = Log()
        for deadline in deadlines { _ = queue.add(deadline) { due.values.append(deadline) } }
        while let body = queue.takeNextDue(now: 2_000_000) { body() }
        deadlines.sort()
        #expect(due.values == deadlines, "\(random)")
    }
}
