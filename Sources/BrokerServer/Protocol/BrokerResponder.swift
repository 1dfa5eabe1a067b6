public import TokenBrokerProtocol

/// Answers protocol requests; the server only moves bytes.
///
/// Both NDJSON lines and HTTP requests become `BrokerRequest`s, so the two
/// encodings on the socket can never disagree.
public protocol BrokerResponder: Sendable {
    /// Decides `request` once: the answer now (a cache hit, a refusal, `ping`), or a ticket
    /// for the exchange it needs, which carries what was resolved. Per-request accounting
    /// (rate limits, audit, metrics) happens here or in the ticket, once.
    /// Called on the event loop: must not block.
    func answer(_ request: BrokerRequest, from peer: PeerCredentials) -> BrokerAnswer

    /// Whether the broker is ready to serve tokens (`/readyz`), with the reason when not.
    func readiness() -> (ready: Bool, reason: String)
}

/// The ops of the NDJSON protocol (`op`), read once at the edge; an unknown op stays a
/// string (`BrokerRequest.op`) for the error that names it.
public enum BrokerOperation: String, Sendable {
    case token, status, ping
}

/// A responder's decision on one request.
public enum BrokerAnswer: Sendable {
    /// The answer, now.
    case now(BrokerResponse)
    /// A successful answer, now, that the connection may give again to the same request
    /// (apart from its `id`) while `RepeatCheck` says so (see `AnswerMemo`).
    case repeatable(BrokerResponse, RepeatCheck)
    /// The request needs an exchange: the ticket waits for it.
    case exchange(any ExchangeTicket)
}

/// An exchange a request waits for, with the identity and validity it resolved.
///
/// A completion rather than `async`: a request waiting for an exchange is then a closure,
/// not a suspended task (several KiB each, and a burst can park thousands).
public protocol ExchangeTicket: Sendable {
    /// Joins (or starts) the exchange: calls `completion` exactly once, from any thread.
    func wait(_ completion: @escaping @Sendable (BrokerResponse) -> Void)
}

/// What decides whether a connection may send a remembered answer again: given by the
/// responder with the answer, kept by the connection's `AnswerMemo`. A client asking for
/// the same cached token over and over on one connection then costs a comparison and a
/// copy instead of a resolution, a cache lookup and an encoding.
public struct RepeatCheck: Sendable {
    /// Called on the event loop for each repeat, which differs from the request first
    /// answered at most in its `id`; must not block. It is not handed the request: copying
    /// one (its strings retained and released) was a tenth of a repeat's cost. `answers`:
    /// how many identical requests it answers at once (a pipelining client's run of the
    /// same line in one read), each to be accounted for.
    public let renew: @Sendable (_ peer: PeerCredentials, _ answers: Int) -> RepeatVerdict

    public init(_ renew: @escaping @Sendable (_ peer: PeerCredentials, _ answers: Int) -> RepeatVerdict) {
        self.renew = renew
    }
}

public enum RepeatVerdict: Sendable {
    /// The answer still holds, and the repeat has been accounted for (audit, metrics).
    case holds
    /// The answer no longer holds (time moved on, configuration changed); nothing was
    /// accounted for: the request takes the usual way.
    case expired
    /// This answer instead, already accounted for (the connection gives it the request's `id`).
    /// Boxed: the verdict of every repeat is otherwise as large as a whole response, and
    /// copied as such.
    indirect case instead(BrokerResponse)
}

/// Renders the Prometheus text exposition served at `GET /metrics`.
public protocol MetricsExposition: Sendable {
    /// The current metrics in Prometheus text format 0.0.4.
    func prometheusText() -> String
}
