import NIOCore

/// A connection served by SwiftNIO: the one handler in the channel's pipeline, passing
/// NIO's events to the connection's `ConnectionSession` and its calls back to NIO. The
/// loopback TCP listeners (the compatibility endpoints) use it, and so do unit tests
/// (an `EmbeddedChannel` with this handler is a connection they drive by hand).
final class NIOConnectionHandler: ChannelInboundHandler, ConnectionIO {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let makeSession: (any ConnectionIO) -> any ConnectionSession
    private var context: ChannelHandlerContext?
    private(set) var session: (any ConnectionSession)?
    private(set) var allocator = ByteBufferAllocator()
    private var started = false
    private var closing = false

    /// `makeSession` is called once the handler is in a pipeline.
    init(makeSession: @escaping (any ConnectionIO) -> any ConnectionSession) {
        self.makeSession = makeSession
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        allocator = context.channel.allocator
        session = makeSession(self)
        if context.channel.isActive { start() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        end()
        self.context = nil
    }

    private func start() {
        guard !started else { return }
        started = true
        session?.started()
    }

    private func end() {
        let ended = session
        session = nil
        ended?.closed()
    }

    func channelActive(context: ChannelHandlerContext) {
        start()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        end()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        session?.received(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        session?.receiveBatchEnded()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        session?.writabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case ChannelEvent.inputClosed: session?.inputClosed()
        case is DrainRequest: session?.drain()
        default: context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: ConnectionIO

    func write(_ bytes: ByteBuffer) {
        context?.write(wrapOutboundOut(bytes), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    func close() {
        guard let context, context.channel.isActive, !closing else { return }
        closing = true
        // NIO drops writes still pending at a close: close once they are out.
        let linger = context.eventLoop.assumeIsolated().scheduleTask(in: closeLingerTimeout) { context.close(promise: nil) }
        context.writeAndFlush(wrapOutboundOut(allocator.buffer(capacity: 0))).assumeIsolated().whenComplete { _ in
            linger.cancel()
            context.close(promise: nil)
        }
    }

    /// False from `close()` on, as for the epoll connection: the session is done with it.
    var isActive: Bool { !closing && (context?.channel.isActive ?? false) }
    var isWritable: Bool { context?.channel.isWritable ?? false }

    func setReading(_ reading: Bool) {
        guard let context else { return }
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: reading)
        if reading { context.read() }
    }

    func replaceSession(with session: any ConnectionSession) {
        self.session = session
    }

    func onConnectionThread<Value: Sendable>(_ body: @escaping (Value) -> Void) -> @Sendable (Value) -> Void {
        guard let loop = context?.eventLoop else { return { _ in } }
        let bound = NIOLoopBound(body, eventLoop: loop)
        return { value in loop.execute { bound.value(value) } }
    }

    func schedule(at deadline: NIODeadline, _ body: @escaping () -> Void) -> any ScheduledCall {
        guard let loop = context?.eventLoop else { return NotScheduled() }
        return loop.assumeIsolated().scheduleTask(deadline: deadline, body)
    }

    private struct NotScheduled: ScheduledCall {
        func cancel() {}
    }
}

extension Scheduled: ScheduledCall {}

/// Sent through every NIO connection's pipeline when the server drains for shutdown; the
/// handler above passes it on as `ConnectionSession.drain()`.
struct DrainRequest: Sendable {}
