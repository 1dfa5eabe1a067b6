public import FoundationEssentials
import Glibc

/// Exchanges assertions at an OAuth 2.0 Token Exchange (RFC 8693) service.
///
/// Pure composition: the request comes from `RFC8693TokenRequest`, the answer is read by
/// `RFC8693TokenResponse`; the injected transport does the I/O and `now` is the injected
/// wall clock. Tolerated deviations from the RFC (a missing `issued_token_type`, …) are
/// reported through `warn`, once per exchange, so the app can log them.
public struct RFC8693Exchanger: TokenExchanger {
    /// Endpoint, target and client authentication.
    public let configuration: RFC8693Configuration
    private let transport: any HTTPTransport
    private let now: @Sendable () -> Date
    private let warn: @Sendable (String) -> Void

    /// Creates an exchanger sending through `transport`.
    ///
    /// - Parameter warn: receives one token-free sentence per tolerated deviation; ignored by default.
    public init(
        configuration: RFC8693Configuration,
        transport: any HTTPTransport,
        now: @escaping @Sendable () -> Date,
        warn: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.transport = transport
        self.now = now
        self.warn = warn
    }

    public func exchange(_ assertion: Assertion, for scope: Scope) async throws(TokenExchangeError) -> AccessToken {
        let request = RFC8693TokenRequest.make(configuration: configuration, scope: scope, assertion: assertion)
        let response = try await transport.send(request)
        let outcome = try RFC8693TokenResponse.parse(response, configuration: configuration, scope: scope, assertion: assertion, now: now())
        for warning in outcome.warnings { warn(warning) }
        return outcome.token
    }
}
