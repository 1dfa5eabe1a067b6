import NIOCore
import TokenBrokerProtocol

/// The one way both protocol handlers answer a request: the connection's remembered
/// answer while its `RepeatCheck` says it holds, else the responder's decision (an answer
/// now, remembered when it may be repeated, or an exchange to wait for). The handlers only
/// frame: they find the request, and write what this decides.
struct RequestDispatcher {
    /// What to send.
    enum Outcome {
        /// The remembered answer, with the request's `id` (`AnswerMemo.answer`).
        case remembered(AnswerMemo)
        /// Boxed, as a repeat (`remembered`) would otherwise be copied at a whole response's size.
        indirect case response(BrokerResponse)
        /// Nothing yet: the ticket's completion brings the answer.
        case exchange(any ExchangeTicket)
    }

    private let responder: any BrokerResponder
    private let peer: PeerCredentials
    /// Whether answers end in `\n` (NDJSON) or not (HTTP bodies).
    private let newline: Bool
    /// The last answer the responder let this connection repeat.
    private(set) var memo: AnswerMemo?

    init(responder: any BrokerResponder, peer: PeerCredentials, newline: Bool) {
        self.responder = responder
        self.peer = peer
        self.newline = newline
    }

    /// `memo`'s answer again if it still holds for the request with `id`, which the handler
    /// found to be the same request (the very line or target, before decoding it); nil, and
    /// the memo is forgotten, when it no longer holds. `answers`: how many such requests
    /// this answers at once (each gets the outcome).
    mutating func repeating(_ memo: AnswerMemo, id: @autoclosure () -> RequestID?, answers: Int = 1) -> Outcome? {
        switch memo.check.renew(peer, answers) {
        case .holds: return .remembered(memo)
        case .instead(var response):
            response.id = id()
            return .response(response)
        case .expired:
            self.memo = nil
            return nil
        }
    }

    /// The answer to `request`. `line` or `target`: how the handler will recognise the same
    /// request before decoding it, should its answer be remembered.
    mutating func dispatch(_ request: BrokerRequest, line: ByteBuffer? = nil, target: String? = nil, allocator: ByteBufferAllocator) -> Outcome {
        if let memo, request.asksSame(as: memo.request), let again = repeating(memo, id: request.id) { return again }
        switch responder.answer(request, from: peer) {
        case .now(let response):
            return .response(response)
        case .exchange(let ticket):
            return .exchange(ticket)
        case .repeatable(let response, let check):
            guard response.error == nil else { return .response(response) }
            var withoutID = response
            withoutID.id = nil
            let encoded = WireCoding.encode(withoutID, allocator: allocator, newline: newline)
            // The line is copied: a slice would pin the connection's receive buffer.
            let kept = line.map { line in
                var copy = allocator.buffer(capacity: line.readableBytes)
                copy.writeImmutableBuffer(line)
                return copy
            }
            let memo = AnswerMemo(request: request, response: withoutID, encoded: encoded, check: check, line: kept, target: target)
            self.memo = memo
            return .remembered(memo)
        }
    }
}
