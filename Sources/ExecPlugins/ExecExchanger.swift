public import FoundationEssentials
import Glibc
public import Logging
public import TokenExchange

/// Trades an assertion for a token by running an exec plugin (protocol: `docs/plugins.md`).
///
/// Each exchange runs the plugin once: `{"apiVersion":"tokenbroker/v1","kind":"ExchangeRequest",
/// "assertion":…,"scope":…}` on its stdin, an `ExchangeResponse` with `token`, optional
/// `tokenType` (default `Bearer`) and required `expiresAt` on its stdout.
///
/// Errors name the plugin and its executable, never the assertion or the token:
/// `upstream_rejected` (not retryable) when the plugin answers `kind: Error` with
/// `retryable: false`; otherwise `upstream_unavailable`, retryable for a timeout, a non-zero
/// exit, a signal or a retryable `Error`, not retryable when the plugin cannot be started or
/// broke the protocol.
public struct ExecExchanger: TokenExchanger {
    /// How the plugin is run.
    public let configuration: ExecPluginConfiguration
    /// The plugin's name in messages and logs (usually the identity's).
    public let name: String

    private let runner: PluginRunner
    private let now: @Sendable () -> Date

    /// Creates an exchanger; nothing runs until `exchange(_:for:)`.
    public init(configuration: ExecPluginConfiguration, name: String, now: @escaping @Sendable () -> Date, logger: Logger) {
        self.configuration = configuration
        self.name = name
        self.now = now
        self.runner = PluginRunner(configuration: configuration, name: name, logger: logger)
    }

    public func exchange(_ assertion: Assertion, for scope: Scope) async throws(TokenExchangeError) -> AccessToken {
        let request = PluginDocument.exchangeRequest(assertion: assertion.jwt, scope: scope.value)
        let answer: PluginDocument.Answer
        do {
            answer = try await runner.answer(input: request, kind: "ExchangeResponse", redacting: [assertion.jwt])
        } catch {
            throw error.exchangeError(label: runner.label)
        }
        let issuedAt = now()
        guard let expiresAt = answer.expiresAt else {
            throw PluginFailure(.misbehaved, "answered ExchangeResponse without 'expiresAt' (required: RFC 3339 or Unix seconds)")
                .exchangeError(label: runner.label)
        }
        guard expiresAt > issuedAt else {
            throw PluginFailure(
                .misbehaved,
                "answered a token that expired at \(Timestamp.iso8601(expiresAt)), "
                    + "\(Int(issuedAt.timeIntervalSince(expiresAt).rounded())) s ago"
            )
            .exchangeError(label: runner.label)
        }
        return AccessToken(value: answer.token, tokenType: answer.tokenType ?? "Bearer", issuedAt: issuedAt, expiresAt: expiresAt)
    }
}
