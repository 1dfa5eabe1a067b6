public import FoundationEssentials
import Glibc
public import TokenExchange

/// What an assertion source holds right now, for status pages and metrics.
///
/// Claims only: a snapshot never carries the token text.
public struct AssertionSnapshot: Sendable, Equatable {
    /// Where the assertion comes from: the watched file, or the plugin or endpoint.
    public var origin: String
    /// Claims of the last good assertion read; nil when the last read failed or none happened yet.
    public var claims: JWTClaims?
    /// When that assertion was read (wall clock); nil without one.
    public var loadedAt: Date?
    /// Why there is no assertion (an operator-facing message); nil when there is one.
    public var errorMessage: String?
    /// The stable code of that error (`assertion_unavailable`); nil when there is an assertion.
    public var errorCode: String?
    /// When the source was last read, successfully or not; nil before the first read.
    public var checkedAt: Date?

    /// Creates a snapshot from its parts.
    public init(
        origin: String,
        claims: JWTClaims? = nil,
        loadedAt: Date? = nil,
        errorMessage: String? = nil,
        errorCode: String? = nil,
        checkedAt: Date? = nil
    ) {
        self.origin = origin
        self.claims = claims
        self.loadedAt = loadedAt
        self.errorMessage = errorMessage
        self.errorCode = errorCode
        self.checkedAt = checkedAt
    }
}
