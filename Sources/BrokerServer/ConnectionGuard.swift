import NIOCore

/// The first handler of every connection: closes it when it has been idle (nothing
/// read or written) for `idleTimeout`, and bounds how long and how large one request
/// may be while it is being read, so a slow or endless sender holds nothing for long:
/// a request must be complete within `requestTimeout` of its first byte, and (for
/// HTTP) its head within `maxBytes`.
///
/// Cheap per request: one timer per connection, never more than `requestTimeout`
/// ahead, re-armed when it fires (so a request that starts later is still caught at
/// its own deadline); a request only sets and clears `requestStartedAt`. NDJSON needs
/// no word from the handler (a read that ends in `\n` holds only complete lines); the
/// HTTP handler calls `requestCompleted()`. `ProtocolSniffer` sets `kind` once it has
/// seen the first byte.
final class ConnectionGuard: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    enum Kind { case ndjson, http }

    /// What the connection speaks; nil until its first byte is seen.
    var kind: Kind?
    private let requestTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private let maxBytes: Int
    private var pendingBytes = 0
    /// When the request being read began; nil between requests.
    private var requestStartedAt: NIODeadline?
    /// The last read or flush.
    private var lastActivity = NIODeadline.now()
    private var timer: Scheduled<Void>?
    private var failed = false

    init(requestTimeout: TimeAmount, idleTimeout: TimeAmount, maxBytes: Int) {
        self.requestTimeout = requestTimeout
        self.idleTimeout = idleTimeout
        self.maxBytes = maxBytes
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startTimer(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startTimer(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stopTimer()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stopTimer()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let chunk = unwrapInboundIn(data)
        lastActivity = .now()
        pendingBytes += chunk.readableBytes
        if requestStartedAt == nil { requestStartedAt = lastActivity }
        // NDJSON has its own line limit (answered with too_large); HTTP heads are capped here.
        if kind == .http, pendingBytes > maxBytes + 4096 {
            fail(context: context, status: "413 Content Too Large", code: "too_large", message: "request exceeds \(maxBytes) bytes; closing the connection")
            return
        }
        let endsLine = chunk.readableBytesView.last == UInt8(ascii: "\n")
        context.fireChannelRead(data)
        if kind == .http, !failed, context.channel.isActive, pendingBytes > maxBytes + 4096 {
            // The first read: the sniffer chose HTTP while it was being handled (and the HTTP
            // parser has not refused it already).
            fail(context: context, status: "413 Content Too Large", code: "too_large", message: "request exceeds \(maxBytes) bytes; closing the connection")
            return
        }
        guard kind == .ndjson, !failed else { return }
        if endsLine {
            requestCompleted()  // every line in the chunk was complete
        } else if requestStartedAt == nil {
            requestStartedAt = .now()  // a partial line follows a complete one
        }
    }

    func flush(context: ChannelHandlerContext) {
        lastActivity = .now()
        context.flush()
    }

    /// Called when a request has been read completely.
    func requestCompleted() {
        pendingBytes = 0
        requestStartedAt = nil
    }

    private func startTimer(context: ChannelHandlerContext) {
        guard timer == nil, !failed else { return }
        lastActivity = .now()
        arm(at: lastActivity + min(requestTimeout, idleTimeout), context: context)
    }

    private func arm(at deadline: NIODeadline, context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            guard !failed, context.channel.isActive else { return }
            let now = NIODeadline.now()
            if let started = requestStartedAt, started + requestTimeout <= now {
                fail(context: context, status: "408 Request Timeout", code: "bad_request",
                     message: "request not completed within \(requestTimeout.nanoseconds / 1_000_000_000) s; closing the connection")
                return
            }
            if lastActivity + idleTimeout <= now {
                context.close(promise: nil)
                return
            }
            // Never more than `requestTimeout` ahead: a request that begins before then
            // is due no earlier than that.
            var next = min(now + requestTimeout, lastActivity + idleTimeout)
            if let started = requestStartedAt { next = min(next, started + requestTimeout) }
            arm(at: next, context: context)
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
        case .ndjson, nil: bytes = body + "\n"
        case .http:
            bytes = "HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        }
        // Written from here, below the protocol handlers, straight to the socket.
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: bytes))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}
