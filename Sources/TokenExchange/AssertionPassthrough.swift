import FoundationEssentials
import Glibc

/// The `none` exchange: the assertion itself is the token, for services that accept
/// the workload's JWT directly (its audience must be the scope asked for).
public struct AssertionPassthrough: TokenExchanger {
    /// Creates the exchange.
    public init() {}

    public func exchange(_ assertion: Assertion, for scope: Scope) async throws(TokenExchangeError) -> AccessToken {
        let audiences = assertion.claims.audiences
        guard audiences.contains(scope.value) || audiences.contains(scope.resource) else {
            throw TokenExchangeError(
                code: .upstreamRejected,
                message:
                    "\(assertion.origin) is served as is, and its audience is \(audiences.joined(separator: ", ")); ask for that scope, not '\(scope.value.prefix(200))'",
                isRetryable: false)
        }
        guard let expiresAt = assertion.claims.expiresAt else {
            throw TokenExchangeError(
                code: .assertionUnavailable, message: "\(assertion.origin) has no exp claim, so it cannot be served as a token", isRetryable: false)
        }
        return AccessToken(value: assertion.jwt, tokenType: "Bearer", issuedAt: assertion.claims.issuedAt ?? assertion.loadedAt, expiresAt: expiresAt)
    }
}
