import Glibc
public import Logging
public import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization

/// The Unix-socket listener. `bind()` makes the socket appear (atomically, with
/// its final mode and group); `run()` serves until graceful shutdown, then drains:
/// the listener closes, requests in flight finish, idle connections close.
public final class BrokerServer: Service, Sendable {
    private let configuration: BrokerServerConfiguration
    private let responder: any BrokerResponder
    private let group: any EventLoopGroup
    private let logger: Logger
    private let connections = ConnectionRegistry()
    private let bound = Mutex<BoundSocket?>(nil)

    private struct BoundSocket: Sendable {
        var channel: any Channel
        var inode: UInt
    }

    /// Creates a server; nothing is bound until `bind()`.
    public init(configuration: BrokerServerConfiguration, responder: any BrokerResponder, group: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.responder = responder
        self.group = group
        self.logger = logger
    }

    /// Binds the socket at `configuration.socketPath`.
    ///
    /// The socket is bound under a temporary name in the same directory, given its
    /// mode and group, then renamed into place: it never exists with wider
    /// permissions, and a stale socket is replaced atomically.
    public func bind() async throws {
        let path = configuration.socketPath
        try UnixSocketPath.prepare(path)
        let temporary = "\(UnixSocketPath.parentDirectory(of: path))/.\(path.split(separator: "/").last ?? "broker.sock").\(getpid()).tmp"
        let channel = try await bootstrap().bind(unixDomainSocketPath: temporary, cleanupExistingSocketFile: true).get()
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
        bound.withLock { $0 = BoundSocket(channel: channel, inode: inode) }
        logger.info("listening", metadata: ["socket.path": "\(path)", "socket.mode": "\(String(configuration.socketMode, radix: 8))"])
    }

    /// Serves an already bound and listening socket inherited from the service manager.
    public func adopt(descriptor: CInt) async throws {
        let channel = try await bootstrap().withBoundSocket(descriptor).get()
        bound.withLock { $0 = BoundSocket(channel: channel, inode: 0) }
        logger.info("serving inherited socket", metadata: ["socket.fd": "\(descriptor)"])
    }

    /// Serves until graceful shutdown or cancellation, then drains.
    public func run() async throws {
        guard let socket = bound.withLock({ $0 }) else {
            throw BrokerServerError(.bindFailed, "run() called before bind()")
        }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                try? await socket.channel.closeFuture.get()
            } onGracefulShutdown: {
                socket.channel.close(promise: nil)
            }
        } onCancel: {
            socket.channel.close(promise: nil)
        }
        await drain()
        if socket.inode != 0 { UnixSocketPath.removeIfOurs(configuration.socketPath, inode: socket.inode) }
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
        let connections = self.connections
        let logger = self.logger
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                guard connections.admit(channel, limit: configuration.maxConnections) else {
                    logger.warning("connection refused: too many connections", metadata: ["server.max_connections": "\(configuration.maxConnections)"])
                    return channel.close()
                }
                return Self.peerCredentials(of: channel).flatMapThrowing { peer in
                    let idle = TimeAmount.nanoseconds(Int64(configuration.idleTimeout.components.seconds) * 1_000_000_000)
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(allTimeout: idle),
                        IdleCloser(),
                        ProtocolSniffer(
                            responder: responder, peer: peer, maxRequestBytes: configuration.maxRequestBytes,
                            requestReadTimeout: .nanoseconds(Int64(configuration.requestReadTimeout.components.seconds) * 1_000_000_000
                                + configuration.requestReadTimeout.components.attoseconds / 1_000_000_000)),
                    ])
                }
            }
    }

    private static func peerCredentials(of channel: any Channel) -> EventLoopFuture<PeerCredentials> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(PeerCredentials(pid: 0, uid: UInt32.max, gid: UInt32.max))
        }
        let future: EventLoopFuture<KernelPeerCredentials> = provider.unsafeGetSocketOption(level: .init(SOL_SOCKET), name: .init(SO_PEERCRED))
        return future.map { PeerCredentials(pid: $0.pid, uid: $0.uid, gid: $0.gid) }
    }
}

/// The layout of Linux `struct ucred` (pid, uid, gid), which Glibc's Swift
/// module does not export without `_GNU_SOURCE`.
struct KernelPeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// The open connections, so that shutdown can drain them.
final class ConnectionRegistry: Sendable {
    private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

    func admit(_ channel: any Channel, limit: Int) -> Bool {
        let admitted = channels.withLock { channels -> Bool in
            guard channels.count < limit else { return false }
            channels[ObjectIdentifier(channel)] = channel
            return true
        }
        if admitted {
            channel.closeFuture.whenComplete { [self] _ in
                _ = channels.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
            }
        }
        return admitted
    }

    var count: Int { channels.withLock { $0.count } }

    func drainAll() {
        for channel in channels.withLock({ Array($0.values) }) {
            channel.pipeline.fireUserInboundEventTriggered(DrainRequest())
        }
    }

    func closeAll() {
        for channel in channels.withLock({ Array($0.values) }) { channel.close(promise: nil) }
    }
}
