import Glibc
public import Logging
public import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization
import TokenExchange

/// The Unix-socket listener (or, for the compatibility endpoints, a loopback TCP
/// one answered by an `HTTPService`). `run()` starts listening (binding the path, or serving
/// the socket inherited from the service manager), serves until graceful shutdown,
/// then drains: the listener closes, requests in flight finish, connections close.
/// Listening inside `run()` means the process already handles SIGTERM by then.
///
/// A Unix socket is served by the broker's own event loops (`EpollListener`): the hot
/// path of every local caller. A TCP listener is served by SwiftNIO on `group`.
public final class BrokerServer: Service, Sendable {
    let configuration: BrokerServerConfiguration
    let responder: any BrokerResponder
    let metrics: (any MetricsExposition)?
    let service: (any HTTPService)?
    let group: any EventLoopGroup
    let logger: Logger
    let connections = ConnectionRegistry()
    let refusals = RefusalLog()
    private let bound = Mutex<BoundSocket?>(nil)
    private let listening = Latch()

    private struct BoundSocket: Sendable {
        enum Listener {
            case nio(any Channel)
            case epoll(EpollListener)
        }
        var listener: Listener
        var inode: UInt
        var port: Int?
    }

    /// Creates a server; nothing is bound until `bind()`. With a `service`, every
    /// connection speaks HTTP/1.1 and every request goes to it.
    public init(
        configuration: BrokerServerConfiguration, responder: any BrokerResponder, metrics: (any MetricsExposition)? = nil,
        service: (any HTTPService)? = nil, group: any EventLoopGroup, logger: Logger
    ) {
        self.configuration = configuration
        self.responder = responder
        self.metrics = metrics
        self.service = service
        self.group = group
        self.logger = logger
    }

    /// Binds the socket at `configuration.socketPath`.
    ///
    /// The socket is bound under a temporary name in the same directory, given its
    /// mode and group, then renamed into place: it never exists with wider
    /// permissions, and a stale socket is replaced atomically.
    public func bind() async throws {
        if let address = configuration.tcpAddress {
            try await bind(address)
            return
        }
        let path = configuration.socketPath
        try UnixSocketPath.prepare(path)
        let temporary = "\(UnixSocketPath.parentDirectory(of: path))/.\(path.split(separator: "/").last ?? "broker.sock").\(getpid()).tmp"
        let descriptor = try UnixSocketPath.listen(at: temporary, backlog: Self.backlog)
        do {
            guard chmod(temporary, mode_t(configuration.socketMode)) == 0 else {
                throw BrokerServerError(.bindFailed, "cannot chmod \(temporary): \(String(cString: strerror(errno)))")
            }
            if let gid = configuration.socketGroup, chown(temporary, uid_t.max, gid) != 0 {
                throw BrokerServerError(.bindFailed, "cannot give \(path) to group \(gid): \(String(cString: strerror(errno)))")
            }
            guard rename(temporary, path) == 0 else {
                throw BrokerServerError(.bindFailed, "cannot move the socket into place at \(path): \(String(cString: strerror(errno)))")
            }
        } catch {
            unlink(temporary)
            close(descriptor)
            throw error
        }
        let inode = UInt((try? UnixSocketPath.fileStat(path).st_ino) ?? 0)
        do {
            try serveUnixSocket(descriptor, inode: inode)
        } catch {
            UnixSocketPath.removeIfOurs(path, inode: inode)  // nobody will answer on it
            throw error
        }
        logger.info("listening", metadata: ["socket.path": "\(path)", "socket.mode": "\(String(configuration.socketMode, radix: 8))"])
    }

    static let backlog: CInt = 1024

    private func bind(_ address: TCPAddress) async throws {
        let channel: any Channel
        do {
            channel = try await nioBootstrap().bind(host: address.host, port: address.port).get()
        } catch {
            throw BrokerServerError(.bindFailed, "cannot listen on \(address): \(error)")
        }
        try await Self.trackAccepts(on: channel, connections: connections)
        let port = channel.localAddress?.port
        bound.withLock { $0 = BoundSocket(listener: .nio(channel), inode: 0, port: port) }
        logger.info("listening", metadata: ["listen.address": "\(TCPAddress(host: address.host, port: port ?? address.port))"])
    }

    /// The TCP port listened on (useful after binding port 0); nil for a Unix socket.
    public var localPort: Int? { bound.withLock { $0?.port } }

    /// Serves an already bound and listening socket inherited from the service manager.
    public func adopt(descriptor: CInt) async throws {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let isUnix = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        } == 0 && address.ss_family == sa_family_t(AF_UNIX)
        if isUnix {
            let flags = fcntl(descriptor, F_GETFL)
            _ = fcntl(descriptor, F_SETFL, flags | O_NONBLOCK)
            try serveUnixSocket(descriptor, inode: 0)
        } else {
            let channel = try await nioBootstrap().withBoundSocket(descriptor).get()
            try await Self.trackAccepts(on: channel, connections: connections)
            bound.withLock { $0 = BoundSocket(listener: .nio(channel), inode: 0, port: channel.localAddress?.port) }
        }
        logger.info("serving inherited socket", metadata: ["socket.fd": "\(descriptor)"])
    }

    private func serveUnixSocket(_ descriptor: CInt, inode: UInt) throws {
        let listener: EpollListener
        do {
            listener = try EpollListener(descriptor: descriptor, threads: configuration.eventLoopThreads, server: self)
        } catch {
            close(descriptor)
            throw error
        }
        bound.withLock { $0 = BoundSocket(listener: .epoll(listener), inode: inode, port: nil) }
        // Accepting from now on, as NIO does once bound: `run()` may start later.
        listener.startAccepting()
    }

    /// Returns once the server accepts connections; throws if listening failed.
    public func waitUntilListening() async throws {
        try await listening.wait()
    }

    /// Listens (unless `bind()`/`adopt()` already did), serves until graceful shutdown
    /// or cancellation, then drains.
    public func run() async throws {
        if bound.withLock({ $0 }) == nil {
            do {
                if let descriptor = configuration.inheritedDescriptor { try await adopt(descriptor: descriptor) } else { try await bind() }
            } catch {
                listening.fail(error)
                throw error
            }
        }
        guard let socket = bound.withLock({ $0 }) else {
            throw BrokerServerError(.bindFailed, "not listening")
        }
        listening.open()
        switch socket.listener {
        case .nio(let channel):
            await withTaskCancellationHandler {
                await withGracefulShutdownHandler {
                    try? await channel.closeFuture.get()
                } onGracefulShutdown: {
                    Task { await self.stopAccepting(channel) }
                }
            } onCancel: {
                channel.close(promise: nil)
            }
            await drain()
        case .epoll(let listener):
            await withTaskCancellationHandler {
                await withGracefulShutdownHandler {
                    await listener.waitUntilStopped()
                } onGracefulShutdown: {
                    listener.stopAccepting()
                }
            } onCancel: {
                listener.stopAccepting()
            }
            await drain()
            await listener.stopLoops()
        }
        if socket.inode != 0 { UnixSocketPath.removeIfOurs(configuration.socketPath, inode: socket.inode) }
    }

    /// Stops accepting, lets connections accepted a moment ago finish their setup,
    /// then closes the listener. Closing it at once would make NIO drop connections
    /// it had accepted but not yet set up — resetting requests a restart must keep.
    /// Connections not yet accepted stay in the kernel's backlog for the next process.
    private func stopAccepting(_ listener: any Channel) async {
        try? await listener.setOption(ChannelOptions.autoRead, value: false).get()
        let deadline = ContinuousClock.now.advanced(by: .seconds(2))
        while connections.initializing > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        try? await listener.close()
    }

    /// Number of open connections.
    public var openConnections: Int { connections.count }

    /// The threads that serve this listener's callers (none before it listens): the
    /// watchdog pings only while each of them runs a task it is given.
    public var servingLoops: LoopProbe {
        switch bound.withLock({ $0?.listener }) {
        case .epoll(let listener)?:
            return LoopProbe(listener.loops.map { loop in { answer in loop.execute(answer) } })
        case .nio(let channel)?:
            let loop = channel.eventLoop
            return LoopProbe([{ answer in loop.execute(answer) }])
        case nil:
            return LoopProbe([])
        }
    }

    private func drain() async {
        connections.drainAll()
        let deadline = ContinuousClock.now.advanced(by: configuration.drainTimeout)
        while connections.count > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        connections.closeAll()
    }

    /// How a new connection is served once its peer is known: the sniffer first.
    func makeSession(for connection: any ConnectionIO, peer: PeerCredentials) -> any ConnectionSession {
        let connectionGuard = ConnectionGuard(
            requestTimeout: TimeAmount(configuration.requestReadTimeout), idleTimeout: TimeAmount(configuration.idleTimeout))
        return ProtocolSniffer(
            connection: connection, responder: responder, peer: peer, maxRequestBytes: configuration.maxRequestBytes,
            connectionGuard: connectionGuard, metrics: metrics, service: service)
    }
}

/// Logs refused connections without letting a flood of them fill the disk: at most one
/// warning per reason every 10 s, counting the refusals in between.
final class RefusalLog: Sendable {
    enum Reason: String, Sendable {
        case tooManyConnections = "too many connections"
        case tooManyConnectionsOfUID = "too many connections from one uid"
    }

    private let throttle = Mutex(LogThrottle<Reason, ContinuousClock.Instant>())

    func refused(_ reason: Reason, limit: Int, uid: UInt32?, logger: Logger) {
        let now = ContinuousClock.now
        guard let suppressed = throttle.withLock({ $0.admit(reason, at: now) }) else { return }
        var metadata: Logger.Metadata = ["server.limit": "\(limit)", "server.refused_since_last_warning": "\(suppressed)"]
        if let uid { metadata["peer.uid"] = "\(uid)" }
        logger.warning("connection refused: \(reason.rawValue)", metadata: metadata)
    }
}

/// The layout of Linux `struct ucred` (pid, uid, gid), which Glibc's Swift
/// module does not export without `_GNU_SOURCE`.
struct KernelPeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// A one-shot gate: waiters resume when it opens (or fails).
final class Latch: Sendable {
    private let state = Mutex<(result: Result<Void, any Error>?, waiters: [CheckedContinuation<Void, any Error>])>((nil, []))

    func open() { finish(.success(())) }
    func fail(_ error: any Error) { finish(.failure(error)) }

    private func finish(_ result: Result<Void, any Error>) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            guard state.result == nil else { return [] }
            state.result = result
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    func wait() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let result = state.withLock { state -> Result<Void, any Error>? in
                if state.result == nil { state.waiters.append(continuation) }
                return state.result
            }
            if let result { continuation.resume(with: result) }
        }
    }
}
