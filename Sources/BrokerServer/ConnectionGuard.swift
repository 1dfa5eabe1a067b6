import NIOCore

/// Bounds how long and how large one request may be while it is being read, so a
/// slow or endless sender holds nothing for long: a request must be complete
/// within `timeout` of its first byte, and (for HTTP) its head within `maxBytes`.
///
/// Cheap per request: one timer per connection, armed lazily and re-armed only
/// when it fires while a request is still being read; a completed request just
/// clears `requestStartedAt`. NDJSON needs no word from the handler (a read that
/// ends in `\n` holds only complete lines); the HTTP handler calls
/// `requestCompleted()` (or sends `RequestCompleted` outbound).
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
    /// When the request being read began; nil between requests.
    private var requestStartedAt: NIODeadline?
    private var timer: Scheduled<Void>?
    private var failed = false

    init(kind: Kind, timeout: TimeAmount, maxBytes: Int) {
        self.kind = kind
        self.timeout = timeout
        self.maxBytes = maxBytes
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stopTimer()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let chunk = unwrapInboundIn(data)
        pendingBytes += chunk.readableBytes
        if requestStartedAt == nil { startRequest(context: context) }
        // NDJSON has its own line limit (answered with too_large); HTTP heads are capped here.
        if kind == .http, pendingBytes > maxBytes + 4096 {
            fail(context: context, status: "413 Content Too Large", code: "too_large", message: "request exceeds \(maxBytes) bytes; closing the connection")
            return
        }
        let endsLine = kind == .ndjson && chunk.readableBytesView.last == UInt8(ascii: "\n")
        context.fireChannelRead(data)
        guard kind == .ndjson, !failed else { return }
        if endsLine {
            requestCompleted()  // every line in the chunk was complete
        } else if requestStartedAt == nil {
            startRequest(context: context)  // a partial line follows a complete one
        }
    }

    /// Called when a request has been read completely.
    func requestCompleted() {
        pendingBytes = 0
        requestStartedAt = nil
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is RequestCompleted else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        requestCompleted()
        promise?.succeed()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stopTimer()
        context.fireChannelInactive()
    }

    private func startRequest(context: ChannelHandlerContext) {
        let started = NIODeadline.now()
        requestStartedAt = started
        if timer == nil { arm(at: started + timeout, context: context) }
    }

    private func arm(at deadline: NIODeadline, context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            guard !failed, let started = requestStartedAt else { return }  // idle: armed again on the next read
            let due = started + timeout
            if due <= .now() {
                fail(context: context, status: "408 Request Timeout", code: "bad_request",
                     message: "request not completed within \(timeout.nanoseconds / 1_000_000_000) s; closing the connection")
            } else {
                arm(at: due, context: context)  // a later request is being read: wait for its own deadline
            }
        }
    }

    private func stopTimer() {
        timer?.cancel()
        timer = nil
    }

    private func fail(context: ChannelHandlerContext, status: String, code: String, message: String) {
        guard !failed else { return }
        failed = true
        stopTimer()
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
