public import FoundationEssentials
import Glibc

/// Exchanges assertions for temporary AWS credentials with STS `AssumeRoleWithWebIdentity`.
///
/// The returned `AccessToken` has `tokenType` `AWS4-HMAC-SHA256`, the session token as its
/// `value`, and the key pair in `awsCredentials`. The scope a caller asked for is not sent:
/// what the credentials may do is the role's policy, so one set serves every scope.
public struct AWSSTSExchanger: TokenExchanger {
    /// Role, session, duration and endpoint.
    public let configuration: AWSSTSConfiguration
    /// The role session name for this identity (the template resolved).
    public let sessionName: String
    private let transport: any HTTPTransport
    private let now: @Sendable () -> Date

    /// Creates an exchanger for the broker identity named `identity`, sending through `transport`.
    ///
    /// Throws when the session name template gives an invalid name for `identity`.
    public init(
        configuration: AWSSTSConfiguration,
        identity: String,
        transport: any HTTPTransport,
        now: @escaping @Sendable () -> Date
    ) throws(AWSSTSConfigurationError) {
        self.configuration = configuration
        self.sessionName = try configuration.sessionName(forIdentity: identity)
        self.transport = transport
        self.now = now
    }

    public func exchange(_ assertion: Assertion, for scope: Scope) async throws(TokenExchangeError) -> AccessToken {
        let request = AWSSTSTokenRequest.make(configuration: configuration, sessionName: sessionName, assertion: assertion)
        let response = try await transport.send(request)
        return try AWSSTSTokenResponse.parse(response, configuration: configuration, assertion: assertion, now: now())
    }
}
