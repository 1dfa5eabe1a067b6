import NIOCore

/// Closes a connection when it has been idle (nothing read or answered) for
/// `idleTimeout`, and bounds how long one request may take to arrive: a request must be
/// complete within `requestTimeout` of its first byte, so a slow or endless sender holds
/// nothing for long. (How large a request may be is the protocol handlers' business.)
///
/// Not a channel handler: the protocol handler that reads the bytes tells it what it
/// saw, which costs nothing per request but a clock read, where a handler of its own
/// would add four pipeline hops to every request. `ProtocolSniffer` starts it when the
/// connection opens and hands it to the protocol handler it installs (each a
/// `ConnectionGuarded`).
///
/// One timer per connection, never more than `requestTimeout` ahead, re-armed when it
/// fires (so a request that starts later is still caught at its own deadline).
/// Event-loop confined.
final class ConnectionGuard {
    enum Kind { case ndjson, http }

    /// What the connection speaks (how a timeout is answered); set once sniffed.
    var kind = Kind.ndjson
    private let requestTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    /// When the request being read began; nil between requests.
    private var requestStartedAt: NIODeadline?
    /// The last read or answer.
    private var lastActivity = NIODeadline.now()
    private var timer: Scheduled<Void>?
    private var channel: (any Channel)?
    /// The connection was refused (timed out); nothing more is read from it.
    private(set) var failed = false

    init(requestTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.requestTimeout = requestTimeout
        self.idleTimeout = idleTimeout
    }

    /// Starts watching `channel` (once it is active; again is a no-op).
    func start(_ channel: any Channel) {
        guard self.channel == nil, !failed else { return }
        self.channel = channel
        lastActivity = .now()
        arm(at: lastActivity + min(requestTimeout, idleTimeout))
    }

    /// Stops the timer (the connection closed); releases the channel.
    func stop() {
        timer?.cancel()
        timer = nil
        channel = nil
    }

    /// Bytes were read. `completedRequest`: they finished at least one request;
    /// `partialRemains`: a request is left unfinished (its deadline runs from now if it
    /// began in this read, else from its first byte).
    func didRead(completedRequest: Bool, partialRemains: Bool) {
        lastActivity = .now()
        if completedRequest || requestStartedAt == nil {
            requestStartedAt = partialRemains ? lastActivity : nil
        }
    }

    /// An answer went out outside a read (after an exchange): the connection is not idle.
    func didAnswer() {
        lastActivity = .now()
    }

    private func arm(at deadline: NIODeadline) {
        guard let channel else { return }
        timer = channel.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            guard !failed, let channel = self.channel, channel.isActive else {
                self.channel = nil
                return
            }
            let now = NIODeadline.now()
            if let started = requestStartedAt, started + requestTimeout <= now {
                fail(channel, status: "408 Request Timeout", code: "bad_request",
                     message: "request not completed within \(requestTimeout.nanoseconds / 1_000_000_000) s; closing the connection")
                return
            }
            if lastActivity + idleTimeout <= now {
                channel.close(promise: nil)
                return
            }
            // Never more than `requestTimeout` ahead: a request that begins before then
            // is due no earlier than that.
            var next = min(now + requestTimeout, lastActivity + idleTimeout)
            if let started = requestStartedAt { next = min(next, started + requestTimeout) }
            arm(at: next)
        }
    }

    private func fail(_ channel: any Channel, status: String, code: String, message: String) {
        failed = true
        stop()
        let body = #"{"ok":false,"error":{"code":"\#(code)","message":"\#(message)","retryable":false}}"#
        let bytes: String
        switch kind {
        case .ndjson: bytes = body + "\n"
        case .http:
            bytes = "HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        }
        channel.writeAndFlush(channel.allocator.buffer(string: bytes)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}

/// A handler that holds the connection's `ConnectionGuard` while it is in the pipeline:
/// starts it once the connection is active, stops it when the connection closes or the
/// handler leaves.
protocol ConnectionGuarded: ChannelInboundHandler {
    var connectionGuard: ConnectionGuard { get }
}

extension ConnectionGuarded {
    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { connectionGuard.start(context.channel) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        connectionGuard.stop()
    }

    func channelActive(context: ChannelHandlerContext) {
        connectionGuard.start(context.channel)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connectionGuard.stop()
        context.fireChannelInactive()
    }
}
