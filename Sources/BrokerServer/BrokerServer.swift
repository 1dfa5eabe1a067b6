import Glibc
public import Logging
public import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization

/// The Unix-socket listener (or, for the compatibility endpoints, a loopback TCP
/// one answered by an `HTTPService`). `run()` starts listening (binding the path, or serving
/// the socket inherited from the service manager), serves until graceful shutdown,
/// then drains: the listener closes, requests in flight finish, connections close.
/// Listening inside `run()` means the process already handles SIGTERM by then.
public final class BrokerServer: Service, Sendable {
    private let configuration: BrokerServerConfiguration
    private let responder: any BrokerResponder
    private let metrics: (any MetricsExposition)?
    private let service: (any HTTPService)?
    private let group: any EventLoopGroup
    private let logger: Logger
    private let connections = ConnectionRegistry()
    private let refusals = RefusalLog()
    private let bound = Mutex<BoundSocket?>(nil)
    private let listening = Latch()

    private struct BoundSocket: Sendable {
        var channel: any Channel
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
        let channel = try await bootstrap().bind(unixDomainSocketPath: temporary, cleanupExistingSocketFile: true).get()
        try await channel.pipeline.addHandler(AcceptTracker(connections: connections, position: .last)).get()
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
            try? await channel.close()
            throw error
        }
        let inode = UInt((try? UnixSocketPath.fileStat(path).st_ino) ?? 0)
        bound.withLock { $0 = BoundSocket(channel: channel, inode: inode, port: nil) }
        logger.info("listening", metadata: ["socket.path": "\(path)", "socket.mode": "\(String(configuration.socketMode, radix: 8))"])
    }

    private func bind(_ address: TCPAddress) async throws {
        let channel: any Channel
        do {
            channel = try await bootstrap().bind(host: address.host, port: address.port).get()
        } catch {
            throw BrokerServerError(.bindFailed, "cannot listen on \(address): \(error)")
        }
        try await channel.pipeline.addHandler(AcceptTracker(connections: connections, position: .last)).get()
        let port = channel.localAddress?.port
        bound.withLock { $0 = BoundSocket(channel: channel, inode: 0, port: port) }
        logger.info("listening", metadata: ["listen.address": "\(TCPAddress(host: address.host, port: port ?? address.port))"])
    }

    /// The TCP port listened on (useful after binding port 0); nil for a Unix socket.
    public var localPort: Int? { bound.withLock { $0?.port } }

    /// Serves an already bound and listening socket inherited from the service manager.
    public func adopt(descriptor: CInt) async throws {
        let channel = try await bootstrap().withBoundSocket(descriptor).get()
        try await channel.pipeline.addHandler(AcceptTracker(connections: connections, position: .last)).get()
        bound.withLock { $0 = BoundSocket(channel: channel, inode: 0, port: channel.localAddress?.port) }
        logger.info("serving inherited socket", metadata: ["socket.fd": "\(descriptor)"])
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
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                try? await socket.channel.closeFuture.get()
            } onGracefulShutdown: {
                Task { await self.stopAccepting(socket.channel) }
            }
        } onCancel: {
            socket.channel.close(promise: nil)
        }
        await drain()
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

    private func drain() async {
        connections.drainAll()
        let deadline = ContinuousClock.now.advanced(by: configuration.drainTimeout)
        while connections.count > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        connections.closeAll()
    }

    private func bootstrap() -> ServerBootstrap {
        let configuration = self.configuration
        let responder = self.responder
        let metrics = self.metrics
        let service = self.service
        let connections = self.connections
        let refusals = self.refusals
        let logger = self.logger
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(AcceptTracker(connections: connections, position: .first)) }
            }
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                guard connections.count <= configuration.maxConnections else {
                    refusals.refused(.tooManyConnections, limit: configuration.maxConnections, uid: nil, logger: logger)
                    return channel.close()
                }
                return Self.peerCredentials(of: channel).flatMapThrowing { credentials in
                    guard connections.claim(channel, uid: credentials.uid, limit: configuration.maxConnectionsPerUID) else {
                        refusals.refused(.tooManyConnectionsOfUID, limit: configuration.maxConnectionsPerUID, uid: credentials.uid, logger: logger)
                        // A failed initializer makes NIO close the connection.
                        throw BrokerServerError(.connectionRefused, "uid \(credentials.uid) has \(configuration.maxConnectionsPerUID) connections open")
                    }
                    return credentials
                }.flatMap { credentials in
                    guard channel.remoteAddress?.protocol == .unix else {
                        // TCP: nothing more to ask the kernel.
                        return channel.eventLoop.makeSucceededFuture(PeerCredentials(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid))
                    }
                    return PeerAttestation.attest(channel, credentials: credentials, threadPool: .singleton)
                }.flatMapThrowing { peer in
                    let connectionGuard = ConnectionGuard(
                        requestTimeout: TimeAmount(configuration.requestReadTimeout), idleTimeout: TimeAmount(configuration.idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(
                        NIOConnectionHandler { connection in
                            ProtocolSniffer(
                                connection: connection, responder: responder, peer: peer, maxRequestBytes: configuration.maxRequestBytes,
                                connectionGuard: connectionGuard, metrics: metrics, service: service)
                        })
                    // Accepted just as shutdown began: serve what it sends, then close.
                    if connections.isDraining { channel.pipeline.fireUserInboundEventTriggered(DrainRequest()) }
                }
            }
    }

    /// `SO_PEERCRED` on a Unix socket; on loopback TCP, the uid that owns the client's
    /// socket in the kernel's socket table (no pid, no gid).
    private static func peerCredentials(of channel: any Channel) -> EventLoopFuture<KernelPeerCredentials> {
        if let remote = channel.remoteAddress, let local = channel.localAddress, remote.protocol != .unix {
            return NIOThreadPool.singleton.runIfActive(eventLoop: channel.eventLoop) {
                KernelPeerCredentials(pid: 0, uid: LoopbackPeer.owner(client: remote, server: local) ?? UInt32.max, gid: UInt32.max)
            }
        }
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(KernelPeerCredentials(pid: 0, uid: UInt32.max, gid: UInt32.max))
        }
        return provider.unsafeGetSocketOption(level: .init(SOL_SOCKET), name: .init(SO_PEERCRED))
    }
}

/// Logs refused connections without letting a flood of them fill the disk: at most one
/// warning per reason every 10 s, counting the refusals in between.
final class RefusalLog: Sendable {
    enum Reason: String, Sendable {
        case tooManyConnections = "too many connections"
        case tooManyConnectionsOfUID = "too many connections from one uid"
    }

    private let state = Mutex<[Reason: (last: ContinuousClock.Instant, suppressed: Int)]>([:])

    func refused(_ reason: Reason, limit: Int, uid: UInt32?, logger: Logger) {
        let now = ContinuousClock.now
        let suppressed = state.withLock { state -> Int? in
            if let entry = state[reason], now < entry.last.advanced(by: .seconds(10)) {
                state[reason]?.suppressed += 1
                return nil
            }
            defer { state[reason] = (now, 0) }
            return state[reason]?.suppressed ?? 0
        }
        guard let suppressed else { return }
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

/// Every connection from the moment it is accepted (before its pipeline exists)
/// until it closes, so that shutdown waits for all of them: a process that exits
/// with an accepted but unanswered connection makes the kernel reset it.
final class ConnectionRegistry: Sendable {
    private let state = Mutex<(channels: [ObjectIdentifier: any Channel], settingUp: Set<ObjectIdentifier>, draining: Bool)>(([:], [], false))
    /// Open connections per peer uid.
    private let perUID = Mutex<[UInt32: Int]>([:])

    /// Counts `channel` against `uid` until it closes; false (and nothing counted) when
    /// the uid already has `limit` connections.
    func claim(_ channel: any Channel, uid: UInt32, limit: Int) -> Bool {
        let claimed = perUID.withLock { counts in
            guard counts[uid, default: 0] < limit else { return false }
            counts[uid, default: 0] += 1
            return true
        }
        guard claimed else { return false }
        channel.closeFuture.whenComplete { [self] _ in
            perUID.withLock { counts in
                let left = counts[uid, default: 1] - 1
                counts[uid] = left > 0 ? left : nil
            }
        }
        return true
    }

    /// Open connections of `uid`.
    func count(uid: UInt32) -> Int { perUID.withLock { $0[uid, default: 0] } }

    func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        state.withLock {
            $0.channels[id] = channel
            $0.settingUp.insert(id)
        }
        channel.closeFuture.whenComplete { [self] _ in
            state.withLock {
                $0.channels.removeValue(forKey: id)
                $0.settingUp.remove(id)
            }
        }
    }

    /// NIO has finished setting the connection up and handed it on.
    func settled(_ channel: any Channel) {
        _ = state.withLock { $0.settingUp.remove(ObjectIdentifier(channel)) }
    }

    /// Connections accepted whose pipeline is not yet in place.
    var initializing: Int { state.withLock { $0.settingUp.count } }

    var count: Int { state.withLock { $0.channels.count } }
    var isDraining: Bool { state.withLock { $0.draining } }

    func drainAll() {
        let channels = state.withLock { state in
            state.draining = true
            return Array(state.channels.values)
        }
        for channel in channels { channel.pipeline.fireUserInboundEventTriggered(DrainRequest()) }
    }

    func closeAll() {
        for channel in state.withLock({ Array($0.channels.values) }) { channel.close(promise: nil) }
    }
}

/// On the listening channel, on both sides of NIO's accept handler: records each
/// connection when accepted (`first`) and when NIO has finished setting it up (`last`).
final class AcceptTracker: ChannelInboundHandler {
    typealias InboundIn = any Channel
    private let connections: ConnectionRegistry
    private let position: Position

    enum Position { case first, last }

    init(connections: ConnectionRegistry, position: Position) {
        self.connections = connections
        self.position = position
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch position {
        case .first: connections.track(unwrapInboundIn(data))
        case .last: connections.settled(unwrapInboundIn(data))
        }
        context.fireChannelRead(data)
    }
}
