import NIOCore

/// Bounds how long and how large one request may be while it is being read, so a
/// slow or endless sender holds nothing for long: a request must be complete
/// within `timeout` of its first byte, and (for HTTP) its head within `maxBytes`.
/// The protocol handlers announce each complete request with `RequestCompleted`.
final class RequestGuard: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    enum Kind { case ndjson, http }

    private let kind: Kind
    private let timeout: TimeAmount
    private let maxBytes: Int
    private var pendingBytes = 0
    private var deadline: Scheduled<Void>?
    private var failed = false

    init(kind: Kind, timeout: TimeAmount, maxBytes: Int) {
        self.kind = kind
        self.timeout = timeout
        self.maxBytes = maxBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        pendingBytes += unwrapInboundIn(data).readableBytes
        if deadline == nil {
            deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
                deadline = nil
                fail(context: context, status: "408 Request Timeout", code: "bad_request",
                     message: "request not completed within \(timeout.nanoseconds / 1_000_000_000) s; closing the connection")
            }
        }
        // NDJSON has its own line limit (answered with too_large); HTTP heads are capped here.
        if kind == .http, pendingBytes > maxBytes + 4096 {
            fail(context: context, status: "413 Content Too Large", code: "too_large", message: "request exceeds \(maxBytes) bytes; closing the connection")
            return
        }
        context.fireChannelRead(data)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is RequestCompleted else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        pendingBytes = 0
        deadline?.cancel()
        deadline = nil
        promise?.succeed()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    private func fail(context: ChannelHandlerContext, status: String, code: String, message: String) {
        guard !failed else { return }
        failed = true
        deadline?.cancel()
        let body = #"{"ok":false,"error":{"code":"\#(code)","message":"\#(message)","retryable":false}}"#
        let bytes: String
        switch kind {
        case .ndjson: bytes = body + "\n"
        case .http:
            bytes = "HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        }
        // Written from here, below the protocol handlers, straight to the socket.
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: bytes))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

/// Sent outbound by the protocol handlers when a request has been read completely.
struct RequestCompleted: Sendable {}
