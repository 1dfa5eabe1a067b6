import NIOCore
import TokenBrokerProtocol

/// A connection's last repeatable answer (see `RepeatCheck`), kept encoded
/// without its `id`: a client asking for the same token again and again on one
/// connection gets these bytes (with its `id` spliced in) for as long as the
/// responder says they hold, about a second (until `expiresIn` ticks). The handler
/// decides what counts as the same request: one that `asksSame`, or (cheaper) the very
/// line or target it first answered.
///
/// A class: the handler looks at it on every request, and a struct of five
/// references would be copied (retained and released) each time.
final class AnswerMemo {
    /// The request first answered (with its `id`).
    let request: BrokerRequest
    /// The answer without an `id`.
    let response: BrokerResponse
    /// `response` encoded (for NDJSON with its `\n`).
    let encoded: ByteBuffer
    /// The responder's word on each repeat.
    let check: RepeatCheck
    /// For NDJSON: the request line as sent.
    let line: ByteBuffer?
    /// For HTTP: the request target as sent.
    let target: String?
    /// For HTTP: the whole keep-alive answer (head and `encoded`), once built.
    var httpMessage: ByteBuffer?

    init(
        request: BrokerRequest, response: BrokerResponse, encoded: ByteBuffer, check: RepeatCheck, line: ByteBuffer? = nil,
        target: String? = nil
    ) {
        self.request = request
        self.response = response
        self.encoded = encoded
        self.check = check
        self.line = line
        self.target = target
    }

    /// The memo's answer for a request with `id`: the encoded bytes themselves when there
    /// is no `id`, else a copy with the `id` in front.
    /// (`allocator` is asked for only when there is an `id`: reaching the connection's costs.)
    func answer(id: RequestID?, allocator: @autoclosure () -> ByteBufferAllocator) -> ByteBuffer {
        guard let id else { return encoded }
        let allocator = allocator()
        if let spliced = WireCoding.withID(id, encodedWithoutID: encoded, allocator: allocator) { return spliced }
        // An `id` that needs escaping: the general encoder.
        var withID = response
        withID.id = id
        return WireCoding.encode(withID, allocator: allocator, newline: encoded.readableBytesView.last == WireBytes.lineEnd)
    }
}

extension BrokerRequest {
    /// Whether the two differ at most in their `id`.
    func asksSame(as other: BrokerRequest) -> Bool {
        op == other.op && scope == other.scope && resource == other.resource && identity == other.identity
            && minValiditySeconds == other.minValiditySeconds && clientId == other.clientId && tenantId == other.tenantId && volume == other.volume
    }
}
