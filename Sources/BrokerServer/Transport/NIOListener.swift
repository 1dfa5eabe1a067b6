import Glibc
import NIOCore
import NIOPosix

/// The loopback TCP listeners (the compatibility endpoints), served by SwiftNIO: each
/// connection's pipeline is one `NIOConnectionHandler`.
extension TCPBrokerServer {
    /// The tracker after NIO's accept handler, added on the channel's loop (the handler
    /// is not `Sendable`, so it is made there too).
    static func trackAccepts(on channel: any Channel, connections: ConnectionRegistry) async throws {
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(AcceptTracker(connections: connections, position: .last))
        }.get()
    }

    func nioBootstrap() -> ServerBootstrap {
        let context = self.context
        let connections = context.connections
        let limits = context.limits
        let refusals = context.refusals
        let logger = context.logger
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: ServerContext.backlog)
            // A restart must not fail while the last run's connections sit in TIME-WAIT.
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptTracker(connections: connections, position: .first))
                }
            }
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                guard connections.count <= limits.maxConnections else {
                    refusals.refused(.tooManyConnections, limit: limits.maxConnections, uid: nil, logger: logger)
                    return channel.close()
                }
                return Self.loopbackPeer(of: channel).flatMapThrowing { peer in
                    guard connections.claim(uid: peer.uid, limit: limits.maxConnectionsPerUID) else {
                        refusals.refused(.tooManyConnectionsOfUID, limit: limits.maxConnectionsPerUID, uid: peer.uid, logger: logger)
                        // A failed initializer makes NIO close the connection.
                        throw BrokerServerError(.connectionRefused, "uid \(peer.uid) has \(limits.maxConnectionsPerUID) connections open")
                    }
                    channel.closeFuture.whenComplete { _ in connections.release(uid: peer.uid) }
                    try channel.pipeline.syncOperations.addHandler(NIOConnectionHandler { context.makeSession(for: $0, peer: peer) })
                    // Accepted just as shutdown began: serve what it sends, then close.
                    if connections.isDraining { channel.pipeline.fireUserInboundEventTriggered(DrainRequest()) }
                }
            }
    }

    /// On loopback TCP, the uid that owns the client's socket (no pid, no gid): one netlink
    /// round trip of a few microseconds, asked on the connection's loop — nothing queues
    /// behind other connections' work, and nothing is read per request.
    private static func loopbackPeer(of channel: any Channel) -> EventLoopFuture<PeerCredentials> {
        var uid = UInt32.max
        if let remote = channel.remoteAddress, let local = channel.localAddress {
            uid = LoopbackPeer.owner(client: remote, server: local) ?? UInt32.max
        }
        return channel.eventLoop.makeSucceededFuture(PeerCredentials(pid: 0, uid: uid, gid: UInt32.max))
    }
}

/// A NIO connection in the `ConnectionRegistry`.
final class TrackedChannel: TrackedConnection {
    let channel: any Channel

    init(_ channel: any Channel) {
        self.channel = channel
    }

    func drain() { channel.pipeline.fireUserInboundEventTriggered(DrainRequest()) }
    func forceClose() { channel.close(promise: nil) }
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
        let channel = unwrapInboundIn(data)
        let id = ObjectIdentifier(channel)
        switch position {
        case .first:
            connections.track(TrackedChannel(channel), id: id)
            let connections = self.connections
            channel.closeFuture.whenComplete { _ in connections.untrack(id: id) }
        case .last:
            connections.settled(id: id)
        }
        context.fireChannelRead(data)
    }
}
