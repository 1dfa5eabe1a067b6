import NIOCore
import TokenBrokerProtocol

/// Looks at the first byte of a connection and hands the connection to the NDJSON or the
/// HTTP/1.1 handler: an uppercase ASCII letter starts an HTTP method (`GET …`), anything
/// else is NDJSON (a JSON request starts with `{`). A compatibility listener (with an
/// `HTTPService`) speaks HTTP only.
final class ProtocolSniffer: ConnectionGuarded {
    let connection: any ConnectionIO
    private let responder: any BrokerResponder
    private let peer: PeerCredentials
    private let maxRequestBytes: Int
    private let metrics: (any MetricsExposition)?
    private let service: (any HTTPService)?
    /// Started when the connection opens (a client that connects and sends nothing is
    /// idle); the protocol handler installed below takes it over.
    let connectionGuard: ConnectionGuard
    private var draining = false
    private var sawData = false
    /// Nothing is answered before the protocol is known.
    var answersOwed: Int { 0 }

    init(
        connection: any ConnectionIO, responder: any BrokerResponder, peer: PeerCredentials, maxRequestBytes: Int, connectionGuard: ConnectionGuard,
        metrics: (any MetricsExposition)? = nil, service: (any HTTPService)? = nil
    ) {
        self.connection = connection
        self.metrics = metrics
        self.service = service
        self.responder = responder
        self.peer = peer
        self.maxRequestBytes = maxRequestBytes
        self.connectionGuard = connectionGuard
    }

    func received(_ buffer: ByteBuffer) {
        guard let first = buffer.readableBytesView.first, !connectionGuard.failed else { return }
        sawData = true
        let handler: any ConnectionGuarded
        switch service == nil ? Self.classify(first) : .http {
        case .http:
            handler = HTTPRequestHandler(
                connection: connection, responder: responder, peer: peer, maxHeadBytes: maxRequestBytes, connectionGuard: connectionGuard,
                metrics: metrics, service: service)
        case .ndjson:
            handler = NDJSONHandler(
                connection: connection, responder: responder, peer: peer, maxLineBytes: maxRequestBytes, connectionGuard: connectionGuard)
        case .neither:
            let message = "this socket speaks NDJSON or HTTP/1.1; a first byte of 0x\(String(first, radix: 16)) is neither (a TLS client?)"
            connection.write(WireBytes.refusal(.badRequest, message, httpStatus: nil, allocator: connection.allocator))
            connection.close()
            return
        }
        connectionGuard.countAnswersOwed(by: handler)
        connection.replaceSession(with: handler)
        handler.received(buffer)
        if draining {
            // The request just read is answered; then the connection closes.
            handler.drain()
        }
    }

    func receiveBatchEnded() {}
    func writabilityChanged() {}

    func inputClosed() {
        connection.close()
    }

    func drain() {
        // Shutting down, and this connection has sent nothing yet. A client that just
        // connected (perhaps queued in the backlog) is about to send its request: give
        // it a moment, answer it, then close — a restart must not lose requests.
        draining = true
        _ = connection.schedule(at: .now() + .seconds(1)) { [self] in
            if !sawData { connection.close() }
        }
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
}
