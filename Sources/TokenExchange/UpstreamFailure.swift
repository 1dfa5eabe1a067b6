import FoundationEssentials

/// The shape in which every token service's error answer is read (Entra, RFC 8693, AWS STS):
/// the status and the service's error code decide the class — throttled, then unavailable,
/// else rejected — and each parser words the message and the hint for its service.
struct UpstreamFailure {
    /// What the answer means for the caller and the cache.
    enum Class: Equatable {
        /// Slow down (`throttled`, retryable after `Retry-After`).
        case throttled
        /// The service failed or answered something that is not its error (`upstream_unavailable`, retryable).
        case unavailable
        /// The service refused this request (`upstream_rejected`).
        case rejected
    }

    /// A refusal's explanation, and whether the same request may succeed later.
    struct Hint {
        var text: String
        var isRetryable = false
    }

    let response: UpstreamResponse
    /// What the service said, already through `UntrustedText`.
    let upstream: TokenExchangeError.Upstream
    let now: Date

    /// The class of an answer with `status` and the service's error `code`. A 429 or a
    /// throttling code is throttled; a 5xx or an unavailability code is unavailable, and so is
    /// an answer the parser did not `understand` as the service's own error whose status is not
    /// one the service refuses with (`authoritative`: a 404 HTML page comes from something else).
    static func classify(
        status: Int, code: String? = nil, understood: Bool, authoritative: Set<Int>,
        throttlingCodes: Set<String> = [], unavailableCodes: Set<String> = []
    ) -> Class {
        if status == 429 || code.map(throttlingCodes.contains) == true { return .throttled }
        if status >= 500 || code.map(unavailableCodes.contains) == true || (!understood && !authoritative.contains(status)) {
            return .unavailable
        }
        return .rejected
    }

    /// A throttled error with the service's `Retry-After` wait (0…1 h); `words` writes the
    /// message around the wait's text (` (Retry-After: 30 s)`, or nothing).
    func throttled(_ words: (_ waitText: String) -> String) -> TokenExchangeError {
        let wait = RetryAfter.parse(response.header("Retry-After"), now: now)
        let waitText = wait.map { " (Retry-After: \($0.components.seconds) s)" } ?? ""
        return TokenExchangeError(code: .throttled, message: words(waitText), isRetryable: true, retryAfter: wait, upstream: upstream)
    }

    /// An unavailable error: worth trying again.
    func unavailable(_ message: String) -> TokenExchangeError {
        TokenExchangeError(code: .upstreamUnavailable, message: message, isRetryable: true, upstream: upstream)
    }

    /// A rejection: `prefix` (the service's code), then the hint and what the service said.
    func rejected(_ prefix: String, _ hint: Hint, said: String?...) -> TokenExchangeError {
        TokenExchangeError(
            code: .upstreamRejected, message: "\(prefix): " + TokenExchangeError.sentences([hint.text] + said),
            isRetryable: hint.isRetryable, upstream: upstream)
    }
}

extension JWTClaims {
    /// `iss='…', sub='…', aud='…'`: what a federation or trust policy must match, for messages.
    /// Each on one line and cut to 256 characters: the token file's writer chose them (a line
    /// break would forge a log line, an escape sequence would drive a terminal).
    var federationFields: String {
        let audience = audiences.joined(separator: ",")
        return "iss='\(Self.shown(issuer ?? "-"))', sub='\(Self.shown(subject ?? "-"))', aud='\(Self.shown(audience))'"
    }

    /// A claim as messages and logs show it.
    public static func shown(_ claim: String) -> String {
        UntrustedText.sanitize(claim, limit: 256)
    }

    /// `exp=1795917723 (2026-11-29T02:02:03Z)`, or `no exp`.
    var expiryForMessages: String {
        expiresAt.map { "exp=\(Int($0.timeIntervalSince1970)) (\(Timestamp.iso8601($0)))" } ?? "no exp"
    }
}
