import TokenExchange

/// Why a plugin run produced no answer, before it is worded as a `TokenExchangeError` for
/// the side (source or exchange) that ran it.
struct PluginFailure: Error, Sendable {
    /// What kind of failure, which decides the error code and whether to retry.
    enum Category: Sendable, Equatable {
        /// The plugin cannot be started as configured (missing, not executable, bad
        /// configuration): retrying without an operator's fix gives the same result.
        case notRunnable
        /// The run failed in a way that may pass next time: timeout, non-zero exit, signal.
        case failed
        /// The plugin answered, but not per the protocol (garbage, wrong kind or version, no
        /// token, not a JWT, too much output): a plugin bug that retrying does not fix.
        case misbehaved
        /// The plugin answered `kind: Error` with this `retryable`.
        case reported(retryable: Bool)
        /// The caller gave up.
        case cancelled
    }

    var category: Category
    /// What happened, starting with a verb ("did not answer within 10 s"); token-free.
    var reason: String

    init(_ category: Category, _ reason: String) {
        self.category = category
        self.reason = reason
    }

    /// Worded for an assertion source: always `assertion_unavailable`.
    func sourceError(label: String) -> TokenExchangeError {
        let retryable: Bool
        switch category {
        case .notRunnable, .misbehaved: retryable = false
        case .failed, .cancelled: retryable = true
        case .reported(let flag): retryable = flag
        }
        return TokenExchangeError(code: .assertionUnavailable, message: "no assertion from \(label): it \(reason)", isRetryable: retryable)
    }

    /// Worded for an exchange: `upstream_rejected` when the plugin reported a final error,
    /// `upstream_unavailable` otherwise.
    func exchangeError(label: String) -> TokenExchangeError {
        let message = "token exchange by \(label) failed: it \(reason)"
        switch category {
        case .reported(retryable: false):
            return TokenExchangeError(code: .upstreamRejected, message: message, isRetryable: false)
        case .reported(retryable: true), .failed, .cancelled:
            return TokenExchangeError(code: .upstreamUnavailable, message: message, isRetryable: true)
        case .notRunnable, .misbehaved:
            return TokenExchangeError(code: .upstreamUnavailable, message: message, isRetryable: false)
        }
    }
}
