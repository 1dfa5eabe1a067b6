import Glibc
public import Logging
public import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// A loopback TCP listener (the compatibility endpoints) served by SwiftNIO on `group`:
/// SDK traffic that is not latency-bound (its pipeline is in `NIOListener`).
public final class TCPBrokerServer: BrokerServer {
    let context: ServerContext
    let configuration: TCPServerConfiguration
    let group: any EventLoopGroup
    private let bound = Mutex<BoundChannel?>(nil)

    private struct BoundChannel: Sendable {
        var channel: any Channel
        var port: Int?
    }

    /// Creates a server; nothing listens until `run()`, on `configuration.address` or
    /// the TCP socket `configuration.inheritedDescriptor`. With a `service`, every
    /// connection speaks HTTP/1.1 and every request goes to it.
    public init(
        configuration: TCPServerConfiguration, responder: any BrokerResponder, metrics: (any MetricsExposition)? = nil,
        service: (any HTTPService)? = nil, group: any EventLoopGroup, logger: Logger
    ) {
        self.configuration = configuration
        context = ServerContext(limits: configuration.limits, responder: responder, metrics: metrics, service: service, logger: logger)
        self.group = group
    }

    private func bind(_ address: TCPAddress) async throws {
        let channel: any Channel
        do {
            channel = try await nioBootstrap().bind(host: address.host, port: address.port).get()
        } catch {
            throw BrokerServerError(.bindFailed, "cannot listen on \(address): \(error)")
        }
        try await Self.trackAccepts(on: channel, connections: context.connections)
        let port = channel.localAddress?.port
        bound.withLock { $0 = BoundChannel(channel: channel, port: port) }
        context.logger.info("listening", metadata: ["listen.address": "\(TCPAddress(host: address.host, port: port ?? address.port))"])
    }

    /// Serves an already bound and listening socket inherited from the service manager.
    private func adopt(_ descriptor: CInt) async throws {
        let channel = try await nioBootstrap().withBoundSocket(descriptor).get()
        try await Self.trackAccepts(on: channel, connections: context.connections)
        bound.withLock { $0 = BoundChannel(channel: channel, port: channel.localAddress?.port) }
        context.logger.info("serving inherited socket", metadata: ["socket.fd": "\(descriptor)"])
    }

    public func waitUntilListening() async throws {
        try await context.listening.wait()
    }

    /// Listens, serves until graceful shutdown or cancellation, then drains.
    public func run() async throws {
        try await context.startListening(isListening: bound.withLock { $0 } != nil) {
            if let descriptor = configuration.inheritedDescriptor {
                try await adopt(descriptor)
            } else if let address = configuration.address {
                try await bind(address)
            } else {
                throw BrokerServerError(.bindFailed, "no TCP address to listen on")
            }
        }
        guard let channel = bound.withLock({ $0?.channel }) else {
            throw BrokerServerError(.bindFailed, "not listening")
        }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                try? await channel.closeFuture.get()
            } onGracefulShutdown: {
                Task { await self.stopAccepting(channel) }
            }
        } onCancel: {
            channel.close(promise: nil)
        }
        await context.drain()
    }

    /// Stops accepting, lets connections accepted a moment ago finish their setup,
    /// then closes the listener. Closing it at once would make NIO drop connections
    /// it had accepted but not yet set up — resetting requests a restart must keep.
    /// Connections not yet accepted stay in the kernel's backlog for the next process.
    private func stopAccepting(_ listener: any Channel) async {
        try? await listener.setOption(ChannelOptions.autoRead, value: false).get()
        let deadline = ContinuousClock.now.advanced(by: .seconds(2))
        while context.connections.initializing > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        try? await listener.close()
    }

    public var openConnections: Int { context.connections.count }

    public var servingLoops: LoopProbe {
        guard let loop = bound.withLock({ $0?.channel.eventLoop }) else { return LoopProbe([]) }
        return LoopProbe([{ answer in loop.execute(answer) }])
    }

    public var localPort: Int? { bound.withLock { $0?.port } }
}
