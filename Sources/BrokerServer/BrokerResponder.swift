public import TokenBrokerProtocol

/// Answers protocol requests; the server only moves bytes.
///
/// Both NDJSON lines and HTTP requests become `BrokerRequest`s, so the two
/// encodings on the socket can never disagree.
public protocol BrokerResponder: Sendable {
    /// Answers at once when that needs no waiting (a cache hit, `ping`), else nil.
    /// Called on the event loop: must not block.
    func immediateResponse(to request: BrokerRequest, from peer: PeerCredentials) -> ImmediateResponse?

    /// Answers `request`, waiting for an exchange if needed: calls `completion` exactly once,
    /// from any thread. Called only after `immediateResponse` returned nil for the same
    /// request, so per-request accounting (rate limits) happens there, once.
    ///
    /// A completion rather than `async`: a request waiting for an exchange is then a closure,
    /// not a suspended task (several KiB each, and a burst can park thousands).
    func respond(to request: BrokerRequest, from peer: PeerCredentials, completion: @escaping @Sendable (BrokerResponse) -> Void)

    /// Whether the broker is ready to serve tokens (`/readyz`), with the reason when not.
    func readiness() -> (ready: Bool, reason: String)
}

/// An answer given at once, and whether the connection may give it again.
public struct ImmediateResponse: Sendable {
    public var response: BrokerResponse
    /// Set (for a successful answer) when the same request (apart from its `id`) from the
    /// same connection may get the same answer again without the responder working it out
    /// anew, while this says so.
    public var repeatable: (any RepeatableAnswer)?

    public init(_ response: BrokerResponse, repeatable: (any RepeatableAnswer)? = nil) {
        self.response = response
        self.repeatable = repeatable
    }
}

/// The responder's word on sending an answer again (see `AnswerMemo`): a client asking
/// for the same cached token over and over on one connection then costs a comparison
/// and a copy instead of a resolution, a cache lookup and an encoding.
public protocol RepeatableAnswer: AnyObject, Sendable {
    /// Called on the event loop for each repeat (`request` differs from the one first
    /// answered at most in its `id`); must not block.
    func renew(_ request: BrokerRequest, for peer: PeerCredentials) -> RepeatVerdict
}

public enum RepeatVerdict: Sendable {
    /// The answer still holds, and the repeat has been accounted for (audit, metrics).
    case holds
    /// The answer no longer holds (time moved on, configuration changed); nothing was
    /// accounted for: the request takes the usual way.
    case expired
    /// This answer instead, already accounted for.
    case instead(BrokerResponse)
}

/// Renders the Prometheus text exposition served at `GET /metrics`.
public protocol MetricsExposition: Sendable {
    /// The current metrics in Prometheus text format 0.0.4.
    func prometheusText() -> String
}
