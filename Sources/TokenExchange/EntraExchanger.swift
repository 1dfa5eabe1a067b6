public import FoundationEssentials
import Glibc

/// Exchanges assertions with Microsoft Entra ID (workload identity federation).
///
/// Pure composition: the request comes from `EntraTokenRequest`, the answer is read
/// by `EntraTokenResponse`; the injected transport does the I/O and `now` is the
/// injected wall clock.
public struct EntraExchanger: TokenExchanger {
    /// Tenant, client and authority.
    public let configuration: EntraConfiguration
    private let transport: any HTTPTransport
    private let now: @Sendable () -> Date

    /// Creates an exchanger sending through `transport`.
    public init(configuration: EntraConfiguration, transport: any HTTPTransport, now: @escaping @Sendable () -> Date) {
        self.configuration = configuration
        self.transport = transport
        self.now = now
    }

    public func exchange(_ assertion: Assertion, for scope: Scope) async throws(TokenExchangeError) -> AccessToken {
        let request = EntraTokenRequest.make(configuration: configuration, scope: scope, assertion: assertion)
        let response = try await transport.send(request)
        return try EntraTokenResponse.parse(response, configuration: configuration, scope: scope, assertion: assertion, now: now())
    }
}
