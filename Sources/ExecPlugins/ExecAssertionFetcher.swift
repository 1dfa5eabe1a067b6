public import FoundationEssentials
import Glibc
public import Logging
import PlainJSON
public import TokenExchange

/// Obtains an assertion by running an exec plugin (protocol: `docs/plugins.md`).
///
/// Each `fetch()` runs the plugin once: `{"apiVersion":"tokenbroker/v1","kind":"AssertionRequest",
/// "audience":…}` on its stdin, an `AssertionResponse` with a JWT `token` and an optional
/// `expiresAt` on its stdout. Caching the assertion until shortly before it expires is the
/// caller's job.
///
/// Every failure is `assertion_unavailable`, naming the plugin and its executable:
/// retryable when the run failed (timeout, non-zero exit, signal) or the plugin said so;
/// not retryable when the plugin cannot be started or broke the protocol. An assertion that
/// is already expired (or expires within 5 s) or not yet valid is `assertion_expired`.
public struct ExecAssertionFetcher: Sendable {
    /// How the plugin is run.
    public let configuration: ExecPluginConfiguration
    /// The `audience` sent in the request; omitted from it when nil.
    public let audience: String?
    /// The plugin's name in messages and logs (usually the identity's).
    public let name: String
    /// The assertion's `origin`: `exec:<name>`, or the executable path when the name is empty.
    public var origin: String { name.isEmpty ? runner.executable : "exec:\(name)" }

    private let runner: PluginRunner
    private let now: @Sendable () -> Date

    /// Creates a fetcher; nothing runs until `fetch()`.
    public init(configuration: ExecPluginConfiguration, audience: String?, name: String, now: @escaping @Sendable () -> Date, logger: Logger) {
        self.configuration = configuration
        self.audience = audience
        self.name = name
        self.now = now
        self.runner = PluginRunner(configuration: configuration, name: name, logger: logger)
    }

    /// Runs the plugin and returns the assertion it printed, checked to be within its
    /// validity window.
    public func fetch() async throws(TokenExchangeError) -> Assertion {
        try await fetchWithExpiry().assertion
    }

    /// Like `fetch()`, also returning when the assertion stops being usable: the earlier of
    /// the plugin's `expiresAt` and the JWT's `exp` (nil when neither is given). Use this to
    /// decide how long to cache it: the JWT's `exp` alone can be later than `expiresAt`.
    public func fetchWithExpiry() async throws(TokenExchangeError) -> (assertion: Assertion, expiresAt: Date?) {
        let request = PluginDocument.assertionRequest(audience: audience)
        let answer: PluginDocument.Answer
        do {
            answer = try await runner.answer(input: request, kind: "AssertionResponse")
        } catch {
            throw error.sourceError(label: runner.label)
        }
        let loadedAt = now()
        let assertion: Assertion
        do {
            assertion = try Assertion(jwt: answer.token.trimmed(), origin: origin, loadedAt: loadedAt)
        } catch {
            // JWTDecodingError's reason holds no token text.
            throw PluginFailure(.misbehaved, "answered a token that is not a JWT (\(error.reason))").sourceError(label: runner.label)
        }
        let expiresAt = [answer.expiresAt, assertion.claims.expiresAt].compactMap { $0 }.min()
        try check(expiresAt: expiresAt, notBefore: assertion.claims.notBefore, now: loadedAt)
        return (assertion, expiresAt)
    }

    /// Refuses an assertion that would be expired by the time a token service read it.
    private func check(expiresAt: Date?, notBefore: Date?, now: Date) throws(TokenExchangeError) {
        if let expiresAt, expiresAt.timeIntervalSince(now) < 5 {
            throw TokenExchangeError(
                code: .assertionExpired,
                message: "the assertion from \(runner.label) expires at \(Timestamp.iso8601(expiresAt)) "
                    + "(\(Int(expiresAt.timeIntervalSince1970)), \(TokenExchangeError.expiry(expiresAt, seenAt: now))); it was not sent. Does the plugin hand out a cached, stale token?",
                isRetryable: true)
        }
        if let notBefore, notBefore.timeIntervalSince(now) > 60 {
            throw TokenExchangeError.assertionNotYetValid(origin: origin, notBefore: notBefore, now: now)
        }
    }
}
