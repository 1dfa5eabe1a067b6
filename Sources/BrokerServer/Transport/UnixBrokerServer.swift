import Glibc
public import Logging
import ServiceLifecycle
import Synchronization

/// A Unix-socket listener served by the broker's own event loops (`EpollListener`): the
/// hot path of every local caller. It takes no NIO event loop group.
public final class UnixBrokerServer: BrokerServer {
    let context: ServerContext
    let configuration: UnixServerConfiguration
    private let bound = Mutex<BoundSocket?>(nil)

    private struct BoundSocket: Sendable {
        var listener: EpollListener
        /// The inode of the socket file this server created; 0 for an inherited socket,
        /// which is never unlinked.
        var inode: UInt
    }

    /// Creates a server; nothing is bound until `bind()` or `run()`. With a `service`,
    /// every connection speaks HTTP/1.1 and every request goes to it.
    public init(
        configuration: UnixServerConfiguration, responder: any BrokerResponder, metrics: (any MetricsExposition)? = nil,
        service: (any HTTPService)? = nil, logger: Logger
    ) {
        self.configuration = configuration
        context = ServerContext(limits: configuration.limits, responder: responder, metrics: metrics, service: service, logger: logger)
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
        let descriptor = try UnixSocketPath.listen(at: temporary, backlog: ServerContext.backlog)
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
            try serve(descriptor, inode: inode)
        } catch {
            UnixSocketPath.removeIfOurs(path, inode: inode)  // nobody will answer on it
            throw error
        }
        context.logger.info("listening", metadata: ["socket.path": "\(path)", "socket.mode": "\(String(configuration.socketMode, radix: 8))"])
    }

    /// Serves an already bound and listening Unix socket inherited from the service manager.
    private func adopt(_ descriptor: CInt) throws {
        let flags = fcntl(descriptor, F_GETFL)
        _ = fcntl(descriptor, F_SETFL, flags | O_NONBLOCK)
        try serve(descriptor, inode: 0)
        context.logger.info("serving inherited socket", metadata: ["socket.fd": "\(descriptor)"])
    }

    private func serve(_ descriptor: CInt, inode: UInt) throws {
        let listener: EpollListener
        do {
            listener = try EpollListener(
                descriptor: descriptor, threads: configuration.eventLoopThreads, attestedEnvironment: configuration.attestedEnvironment,
                context: context)
        } catch {
            close(descriptor)
            throw error
        }
        bound.withLock { $0 = BoundSocket(listener: listener, inode: inode) }
        // Accepting from now on, as NIO does once bound: `run()` may start later.
        listener.startAccepting()
    }

    public func waitUntilListening() async throws {
        try await context.listening.wait()
    }

    /// Listens (unless `bind()` already did), serves until graceful shutdown or
    /// cancellation, then drains and stops the loops.
    public func run() async throws {
        try await context.startListening(isListening: bound.withLock { $0 } != nil) {
            if let descriptor = configuration.inheritedDescriptor { try adopt(descriptor) } else { try await bind() }
        }
        guard let socket = bound.withLock({ $0 }) else {
            throw BrokerServerError(.bindFailed, "not listening")
        }
        let listener = socket.listener
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await listener.waitUntilStopped()
            } onGracefulShutdown: {
                listener.stopAccepting()
            }
        } onCancel: {
            listener.stopAccepting()
        }
        await context.drain()
        await listener.stopLoops()
        if socket.inode != 0 { UnixSocketPath.removeIfOurs(configuration.socketPath, inode: socket.inode) }
    }

    public var openConnections: Int { context.connections.count }

    public var servingLoops: LoopProbe {
        guard let listener = bound.withLock({ $0?.listener }) else { return LoopProbe([]) }
        return LoopProbe(listener.loops.map { loop in { answer in loop.execute(answer) } })
    }

    public var localPort: Int? { nil }
}
