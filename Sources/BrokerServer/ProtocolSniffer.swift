import NIOCore

/// Looks at the first byte of a connection and installs the NDJSON or the HTTP/1.1
/// pipeline: an uppercase ASCII letter starts an HTTP method (`GET …`), anything
/// else is NDJSON (a JSON request starts with `{`). A compatibility listener (with an
/// `HTTPService`) speaks HTTP only.
final class ProtocolSniffer: ConnectionGuarded, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let responder: any BrokerResponder
    private let peer: PeerCredentials
    private let maxRequestBytes: Int
    private let metrics: (any MetricsExposition)?
    private let service: (any HTTPService)?
    let connectionGuard: ConnectionGuard
    private var draining = false
    private var sawData = false

    init(
        responder: any BrokerResponder, peer: PeerCredentials, maxRequestBytes: Int, connectionGuard: ConnectionGuard,
        metrics: (any MetricsExposition)? = nil, service: (any HTTPService)? = nil
    ) {
        self.metrics = metrics
        self.service = service
        self.responder = responder
        self.peer = peer
        self.maxRequestBytes = maxRequestBytes
        self.connectionGuard = connectionGuard
    }

    // The connection's timeouts run from the moment it opens (a client that connects and
    // sends nothing is idle); the protocol handler installed below takes the guard over.
    func handlerRemoved(context: ChannelHandlerContext) {}

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.readableBytesView.first, !connectionGuard.failed else { return }
        sawData = true
        let pipeline = context.pipeline.syncOperations
        do {
            switch service == nil ? Self.classify(first) : .http {
            case .http:
                try pipeline.addHandler(
                    HTTPRequestHandler(
                        responder: responder, peer: peer, maxHeadBytes: maxRequestBytes, connectionGuard: connectionGuard, metrics: metrics, service: service),
                    position: .after(self))
            case .ndjson:
                try pipeline.addHandler(
                    NDJSONHandler(responder: responder, peer: peer, maxLineBytes: maxRequestBytes, connectionGuard: connectionGuard), position: .after(self))
            case .neither:
                let message = "this socket speaks NDJSON or HTTP/1.1; a first byte of 0x\(String(first, radix: 16)) is neither (a TLS client?)"
                let line = #"{"ok":false,"error":{"code":"bad_request","message":"\#(message)","retryable":false}}"# + "\n"
                context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: line))).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
                return
            }
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        if draining {
            // The request just read is answered; then the connection closes.
            context.fireUserInboundEventTriggered(DrainRequest())
        }
        pipeline.removeHandler(context: context, promise: nil)
    }

    enum Encoding { case ndjson, http, neither }

    /// An uppercase letter starts an HTTP method; JSON starts with `{` (or another
    /// JSON value, or whitespace, answered as a bad request line); anything else is
    /// refused at once rather than buffered.
    static func classify(_ first: UInt8) -> Encoding {
        switch first {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): .http
        case UInt8(ascii: "{"), UInt8(ascii: "["), UInt8(ascii: "\""), UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
            .ndjson
        default: .neither
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case ChannelEvent.inputClosed:
            context.close(promise: nil)
        case is DrainRequest:
            // Shutting down, and this connection has sent nothing yet. A client that just
            // connected (perhaps queued in the backlog) is about to send its request: give
            // it a moment, answer it, then close — a restart must not lose requests.
            draining = true
            context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { [self] in
                if !sawData { context.close(promise: nil) }
            }
        default: context.fireUserInboundEventTriggered(event)
        }
    }
}
