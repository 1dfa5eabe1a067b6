public import TokenBrokerProtocol

/// Answers protocol requests; the server only moves bytes.
///
/// Both NDJSON lines and HTTP requests become `BrokerRequest`s, so the two
/// encodings on the socket can never disagree.
public protocol BrokerResponder: Sendable {
    /// Answers at once when that needs no waiting (a cache hit, `ping`), else nil.
    /// Called on the event loop: must not block.
    func immediateResponse(to request: BrokerRequest, from peer: PeerCredentials) -> BrokerResponse?

    /// Answers `request`, waiting for an exchange if needed. Called only after
    /// `immediateResponse` returned nil for the same request, so per-request accounting
    /// (rate limits) happens there, once.
    func response(to request: BrokerRequest, from peer: PeerCredentials) async -> BrokerResponse

    /// Whether the broker is ready to serve tokens (`/readyz`), with the reason when not.
    func readiness() -> (ready: Bool, reason: String)
}

/// Renders the Prometheus text exposition served at `GET /metrics`.
public protocol MetricsExposition: Sendable {
    /// The current metrics in Prometheus text format 0.0.4.
    func prometheusText() -> String
}
