import Synchronization
import TokenExchange

/// Throttling per identity.
///
/// A token service throttles a client, not a scope: after a `throttled` answer (HTTP 429,
/// AWS `Throttling`, with or without `Retry-After`) a request for another scope of the same
/// identity would be refused too, and a caller inventing scopes would send one request per
/// scope into the window (30 new scopes, 30 requests inside a `Retry-After: 60`). So the
/// window — the backoff of the refused exchange, never shorter than `Retry-After` — holds
/// for the whole identity, which has exactly one token service. Until it passes, a miss on
/// any of its scopes fails at once with `throttled` and the whole seconds left as
/// `retryAfter` (a still-valid cached token is served instead), exchanges already queued
/// for a slot are dropped unsent, and the refresher skips the identity. Nothing waits: a
/// caller is told when to come back. Other identities are not affected.
extension TokenCache {
    /// No exchange of an identity before `until`: its token service throttled it.
    struct IdentityThrottle: Sendable {
        var until: C.Instant
        /// What the token service's answer became (kept for its `upstream` details).
        var cause: TokenExchangeError

        /// The error for a request not sent at `instant`: `throttled`, with what is left of
        /// the window, in whole seconds rounded up, as `retryAfter`.
        func error(identity: String, at instant: C.Instant) -> TokenExchangeError {
            let left = instant.duration(to: until).components
            let seconds = max(1, left.seconds + (left.attoseconds > 0 ? 1 : 0))
            return TokenExchangeError(
                code: .throttled,
                message: "the token service is throttling identity '\(identity)': no request for it is sent for another \(seconds) s; "
                    + "serving cached tokens where possible",
                isRetryable: true, retryAfter: .seconds(seconds), upstream: cause.upstream)
        }
    }

    /// The error for an exchange of `identity` that must not be sent now; nil when it may be.
    func throttledError(identity: IdentityEntries, key: TokenKey) -> TokenExchangeError? {
        let instant = clock.now
        return state.withLock { _ in
            guard let throttle = identity.throttle, instant < throttle.until else { return nil }
            return throttle.error(identity: key.identity, at: instant)
        }
    }
}

extension TokenCache.IdentityEntries {
    /// Pauses this identity's exchanges until `until` (the later pause wins). Under the
    /// cache's lock.
    func pause(until: C.Instant, cause: TokenExchangeError) {
        if let throttle, throttle.until >= until { return }
        throttle = TokenCache.IdentityThrottle(until: until, cause: cause)
    }

    /// Whether the token service throttled this identity and the window is still open.
    /// Under the cache's lock.
    func isThrottled(at instant: C.Instant) -> Bool {
        throttle.map { instant < $0.until } ?? false
    }
}
