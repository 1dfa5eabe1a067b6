import NIOCore
import NIOHTTP1
import TokenBrokerProtocol

/// One finished HTTP answer, and how it becomes bytes. Small to copy (it waits in the
/// sequencer): a JSON response is boxed, a remembered answer is a reference.
struct HTTPReply {
    /// How the answer is framed, from its request.
    struct Form {
        var keepAlive: Bool
        /// An answer to `HEAD`: the headers only.
        var headOnly: Bool
    }

    /// What the body is.
    enum Content {
        /// A response, encoded as JSON when written.
        indirect case json(BrokerResponse)
        /// The connection's remembered answer (a successful token): its bytes are in the memo.
        case memo(AnswerMemo)
        /// Plain text (`/metrics`).
        case text(String)
        /// An `HTTPService`'s answer, sent as it is.
        case custom(HTTPServiceResponse)
    }

    /// The status code (the reason phrase is NIO's for it).
    var code: Int
    var content: Content
    var form: Form

    init(code: Int, _ content: Content, form: Form) {
        self.code = code
        self.content = content
        self.form = form
    }

    init(status: HTTPResponseStatus, body: BrokerResponse, form: Form) {
        self.init(code: Int(status.code), .json(body), form: form)
    }

    /// The status follows the response's error code.
    init(_ response: BrokerResponse, form: Form) {
        self.init(code: response.error.map { Self.status(for: $0.code) } ?? 200, .json(response), form: form)
    }

    /// The HTTP status that goes with an error code.
    static func status(for code: String) -> Int {
        switch WireErrorCode(rawValue: code) {
        case .badRequest, .unknownOp, .identityRequired: 400
        case .forbidden: 403
        case .unknownIdentity, .notFound: 404
        case .tooLarge: 413
        case .throttled: 429
        case .upstreamRejected: 502
        case .assertionUnavailable, .assertionExpired, .upstreamUnavailable, .shuttingDown: 503
        case .internal, nil: 500
        }
    }

    /// One whole answer as one buffer: the head (`WireBytes.writeHTTPHead`) and the body
    /// unless `headOnly`. Every route is a small GET with a small, complete answer, so
    /// nothing is streamed.
    static func message(
        code: Int, contentType: String, body: ByteBuffer, extraHeaders: [(name: String, value: String)], keepAlive: Bool, headOnly: Bool,
        allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        var message = allocator.buffer(capacity: 192 + body.readableBytes)
        WireBytes.writeHTTPHead(
            into: &message, code: code, contentType: contentType, contentLength: body.readableBytes, extraHeaders: extraHeaders, keepAlive: keepAlive)
        if !headOnly { message.writeImmutableBuffer(body) }
        return message
    }
}
