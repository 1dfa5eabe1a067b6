import DetachedThread
import Glibc
import Synchronization
import TokenBrokerProtocol

// Hand-written on POSIX sockets, a thread per connection, instead of SwiftNIO: the CLI has no
// event-loop library, a NIO-based daemon is ~20 MiB resident idle (docs/benchmarks.md) against
// the relay's 7.5 MiB (release, static stdlib; docs/kubernetes.md#the-relay), and the relay's
// callers are one pod's SDKs — a handful of connections, each asking for a token every few
// minutes. Blocking reads with poll() deadlines are all it needs.

/// Serves the relay's loopback listener: accepts connections, reads HTTP/1.1 heads, answers
/// each through `RelayResponder`, keeps connections alive until the client closes, sends
/// `Connection: close`, or is idle too long.
final class RelayServer: Sendable {
    /// Limits of one connection.
    struct Limits: Sendable {
        /// Connections served at once (`--max-connections`, default 64); more are answered 503 and closed.
        var maxConnections = 64
        /// A connection with no request started for this long is closed (60 s).
        var idleTimeoutMilliseconds: Int32 = 60_000
        /// A started head must be complete within this time (10 s), else 408 and close.
        var headTimeoutMilliseconds: Int32 = 10_000
        /// A client that does not read its answer for this long is dropped (10 s).
        var sendTimeoutSeconds = 10
    }

    private let listener: Int32
    private let responder: RelayResponder
    private let socketPath: String
    private let brokerTimeoutSeconds: Int
    private let limits: Limits
    private let active = Atomic<Int>(0)
    private let peers: RelayPeers

    init(
        listener: Int32, responder: RelayResponder, socketPath: String, brokerTimeoutSeconds: Int, limits: Limits = Limits(),
        peers: RelayPeers = .sameUser
    ) {
        self.listener = listener
        self.peers = peers
        self.responder = responder
        self.socketPath = socketPath
        self.brokerTimeoutSeconds = brokerTimeoutSeconds
        self.limits = limits
    }

    /// Accepts connections for the life of the process.
    func run() -> Never {
        while true {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else {
                // Out of descriptors (or memory): pause rather than spin; anything else is per connection.
                if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM { usleep(100_000) }
                continue
            }
            var timeout = timeval(tv_sec: limits.sendTimeoutSeconds, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            guard active.add(1, ordering: .relaxed).newValue <= limits.maxConnections else {
                active.subtract(1, ordering: .relaxed)
                Self.send(
                    connection,
                    RelayFlavor.imds.error(503, "too_many_connections", "the relay serves at most \(limits.maxConnections) connections at once")
                        .serialized(close: true))
                close(connection)
                continue
            }
            let work: @Sendable () -> Void = { [self] in
                if let refusal = peers.refusal(of: connection) {
                    Self.send(connection, RelayFlavor.imds.error(403, "forbidden", refusal).serialized(close: true))
                    Self.lingeringClose(connection)
                } else {
                    serve(connection)
                }
                close(connection)
                active.subtract(1, ordering: .relaxed)
            }
            // No thread to give (the pod's pids limit): serve it here rather than drop it.
            if DetachedThread.tryStart(work) != nil { work() }
        }
    }

    /// Answers requests on one connection until it closes.
    private func serve(_ connection: Int32) {
        let link = RelayBrokerLink(socketPath: socketPath, timeoutSeconds: brokerTimeoutSeconds)
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        var headStarted: ContinuousClock.Instant?
        while true {
            switch RelayHTTPHead.parse(buffer) {
            case .request(let request, let consumed):
                buffer.removeFirst(consumed)
                headStarted = buffer.isEmpty ? nil : ContinuousClock.now
                let response = responder.respond(to: request, link: link)
                guard Self.send(connection, response.serialized(close: !request.keepAlive)), request.keepAlive else { return }
                continue
            case .invalid(let status, let message):
                Self.send(connection, RelayFlavor.imds.error(status, "bad_request", message).serialized(close: true))
                Self.lingeringClose(connection)
                return
            case .incomplete:
                break
            }
            // Wait for more bytes: the idle timeout before a request starts, then what is left of the head's.
            let wait: Int32
            if let headStarted {
                let left = limits.headTimeoutMilliseconds - Int32((ContinuousClock.now - headStarted) / .milliseconds(1))
                guard left > 0 else {
                    Self.send(
                        connection,
                        RelayFlavor.imds.error(408, "bad_request", "the request head was not complete within 10 s").serialized(close: true))
                    Self.lingeringClose(connection)
                    return
                }
                wait = left
            } else {
                wait = limits.idleTimeoutMilliseconds
            }
            var poller = pollfd(fd: connection, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, wait)
            if ready < 0, errno == EINTR { continue }
            guard ready > 0 else {
                if ready == 0, headStarted != nil { continue }  // the deadline check above answers 408
                return
            }
            let count = recv(connection, &chunk, chunk.count, 0)
            guard count > 0 else { return }  // closed, or reset
            if buffer.isEmpty { headStarted = ContinuousClock.now }
            buffer.append(contentsOf: chunk[..<count])
        }
    }

    /// Ends the sending side and reads what the client still sends (up to 64 KiB, 1 s): closing
    /// with unread bytes would reset the connection, and the client could lose the error answer.
    private static func lingeringClose(_ connection: Int32) {
        shutdown(connection, Int32(SHUT_WR))
        var chunk = [UInt8](repeating: 0, count: 4096)
        var drained = 0
        var poller = pollfd(fd: connection, events: Int16(POLLIN), revents: 0)
        while drained < 64 * 1024, poll(&poller, 1, 1000) > 0 {
            let count = recv(connection, &chunk, chunk.count, 0)
            guard count > 0 else { return }
            drained += count
        }
    }

    /// Writes all of `bytes`; false when the client is gone or does not read.
    @discardableResult
    private static func send(_ connection: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.send(connection, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return false }
            sent += count
        }
        return true
    }
}
