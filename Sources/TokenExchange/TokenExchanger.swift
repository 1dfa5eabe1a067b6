/// Trades an assertion for an access token at some token service.
public protocol TokenExchanger: Sendable {
    /// Exchanges `assertion` for a token valid for `scope`.
    func exchange(_ assertion: Assertion, for scope: Scope) async throws(TokenExchangeError) -> AccessToken
}

/// Produces the current assertion for an identity (a token file, a plugin, …).
public protocol AssertionSource: Sendable {
    /// The freshest assertion, already checked to be within its validity window.
    ///
    /// Throws `assertion_unavailable` when none can be read and `assertion_expired`
    /// when the only one available is expired or not yet valid.
    func currentAssertion() async throws(TokenExchangeError) -> Assertion
    /// Changes whenever the source holds a new assertion (a rotated or fixed token file): a
    /// failure met with an older one is not waited out. Sources that fetch on demand keep 0.
    var assertionVersion: UInt64 { get }
}

extension AssertionSource {
    public var assertionVersion: UInt64 { 0 }
}
