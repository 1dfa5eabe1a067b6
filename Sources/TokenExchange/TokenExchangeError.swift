public import FoundationEssentials
import Glibc

/// Everything that can go wrong while obtaining a token, with a stable `code`
/// usable as a metrics label and as the wire `error.code`.
///
/// `message` is written for the operator and is safe to show a caller: it never
/// contains a token, an assertion, or a raw upstream body.
public struct TokenExchangeError: Error, Sendable, CustomStringConvertible {
    /// Stable machine-readable codes.
    public enum Code: String, Sendable, CaseIterable {
        /// No assertion could be read (missing, empty or garbage file, failed plugin).
        case assertionUnavailable = "assertion_unavailable"
        /// The assertion is expired or not yet valid; it was not sent.
        case assertionExpired = "assertion_expired"
        /// The token service refused the request (4xx other than 429).
        case upstreamRejected = "upstream_rejected"
        /// The token service could not be reached or failed (5xx, transport, bad response).
        case upstreamUnavailable = "upstream_unavailable"
        /// The token service asked us to slow down (429).
        case throttled = "throttled"
        /// The broker is stopping: the exchange was abandoned (ask the next instance).
        case shuttingDown = "shutting_down"
        /// A bug or an impossible state.
        case `internal` = "internal"
    }

    /// What the token service said, when it said something.
    ///
    /// Every string here came from the token service and passed through `UntrustedText`
    /// in the parser that read it: the ids only when they look like ids, the error code cut
    /// short, neither with a secret we sent or a line break in it.
    public struct Upstream: Sendable, Equatable {
        /// HTTP status.
        public var status: Int
        /// OAuth `error`, e.g. `invalid_client`.
        public var error: String?
        /// Entra `error_codes` (the numbers of `AADSTSnnnn`).
        public var codes: [Int]
        /// Entra `trace_id`.
        public var traceId: String?
        /// Entra `correlation_id`.
        public var correlationId: String?

        /// Creates upstream details.
        public init(status: Int, error: String? = nil, codes: [Int] = [], traceId: String? = nil, correlationId: String? = nil) {
            self.status = status
            self.error = error
            self.codes = codes
            self.traceId = traceId
            self.correlationId = correlationId
        }
    }

    /// The stable code.
    public var code: Code
    /// A specific, actionable, token-free message.
    public var message: String
    /// Whether trying again later may succeed.
    public var isRetryable: Bool
    /// How long the token service asked us to wait (`Retry-After`).
    public var retryAfter: Duration?
    /// Details from the token service's error body.
    public var upstream: Upstream?

    /// Creates an error.
    public init(code: Code, message: String, isRetryable: Bool, retryAfter: Duration? = nil, upstream: Upstream? = nil) {
        self.code = code
        self.message = message
        self.isRetryable = isRetryable
        self.retryAfter = retryAfter
        self.upstream = upstream
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

extension TokenExchangeError {
    /// No usable assertion at `origin`, for `reason`.
    public static func assertionUnavailable(origin: String, reason: String) -> Self {
        Self(code: .assertionUnavailable, message: "no usable assertion at \(origin): \(reason)", isRetryable: true)
    }

    /// When an assertion found unusable expires, against `now`: "12 s ago", or "in 3 s,
    /// too soon to use" for one that would expire before a token service read it.
    public static func expiry(_ expiresAt: Date, seenAt now: Date) -> String {
        let ago = Int(now.timeIntervalSince(expiresAt).rounded())
        return ago >= 0 ? "\(ago) s ago" : "in \(-ago) s, too soon to use"
    }

    /// The assertion at `origin` expired at `expiresAt`.
    public static func assertionExpired(origin: String, expiresAt: Date, now: Date) -> Self {
        Self(
            code: .assertionExpired,
            message: "the assertion in \(origin) expired at \(Timestamp.iso8601(expiresAt)) "
                + "(exp=\(Int(expiresAt.timeIntervalSince1970)), \(expiry(expiresAt, seenAt: now))); "
                + "it was not sent. Is the file still being refreshed (kubelet projected volume, or the writer of this file)?",
            isRetryable: true
        )
    }

    /// The assertion at `origin` is not valid before `notBefore`.
    public static func assertionNotYetValid(origin: String, notBefore: Date, now: Date) -> Self {
        Self(
            code: .assertionExpired,
            message: "the assertion in \(origin) is not valid before \(Timestamp.iso8601(notBefore)) (nbf=\(Int(notBefore.timeIntervalSince1970)), "
                + "\(Int(notBefore.timeIntervalSince(now))) s from now); it was not sent. Check the clocks of this host and the issuer.",
            isRetryable: true
        )
    }

    /// The token service could not be reached.
    public static func transport(_ what: String) -> Self {
        Self(code: .upstreamUnavailable, message: transportPrefix + what, isRetryable: true)
    }

    /// How `transport(_:)` begins its message (a caller that is not asking a token service drops it).
    public static let transportPrefix = "token service unreachable: "
}

/// Formatting of wall-clock instants for messages.
public enum Timestamp {
    /// `2026-11-29T01:02:03Z`.
    public static func iso8601(_ date: Date) -> String {
        RFC3339.string(from: date)
    }
}

extension TokenExchangeError {
    /// Sentences joined with one full stop each, whether or not a part (our hint, or
    /// text the token service sent, cut with "…") already ends in one.
    static func sentences(_ parts: String?...) -> String {
        sentences(parts)
    }

    static func sentences(_ parts: [String?]) -> String {
        parts.compactMap { part -> String? in
            guard var text = part, !text.isEmpty else { return nil }
            if !(text.hasSuffix(".") || text.hasSuffix("…") || text.hasSuffix("?") || text.hasSuffix("!")) { text += "." }
            return text
        }.joined(separator: " ")
    }
}
