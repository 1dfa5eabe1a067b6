public import TokenExchange

/// Obtains a fresh token for a scope, bypassing any cache. The cache calls it on
/// a miss and when a refresh is due.
public protocol TokenFetching: Sendable {
    /// Fetches a new token for `scope`.
    func fetchToken(for scope: Scope) async throws(TokenExchangeError) -> AccessToken
    /// Changes when what a fetch would send changes (a new assertion): the cache then retries
    /// a failed scope at once instead of waiting out its backoff.
    var inputVersion: UInt64 { get }
}

extension TokenFetching {
    public var inputVersion: UInt64 { 0 }
}

/// The usual fetcher: read the current assertion from a source, trade it at an exchanger.
public struct AssertionExchange: TokenFetching {
    /// Where the assertion comes from.
    public let source: any AssertionSource
    /// Where it is traded.
    public let exchanger: any TokenExchanger

    /// Composes a source and an exchanger.
    public init(source: any AssertionSource, exchanger: any TokenExchanger) {
        self.source = source
        self.exchanger = exchanger
    }

    public var inputVersion: UInt64 { source.assertionVersion }

    public func fetchToken(for scope: Scope) async throws(TokenExchangeError) -> AccessToken {
        // The source checks exp/nbf: an expired assertion never reaches the exchanger.
        let assertion = try await source.currentAssertion()
        return try await exchanger.exchange(assertion, for: scope)
    }
}
