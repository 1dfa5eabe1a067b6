import Logging
import Synchronization
import TokenExchange

/// The "token exchange failed" warning, limited like the audit log: a caller inventing
/// scopes for an identity whose assertion is unusable makes one failed exchange per scope
/// (140,000 of them wrote 98 MB of warnings in a minute). At most one warning per
/// (identity, error code) every 10 s; the rest go to debug level and are counted, and the
/// count (`log.suppressed`) rides on the next warning, or on a "token exchange failures
/// not logged" line from the refresher once the 10 s are over. Metrics count every one.
extension TokenCache {
    /// Which failures share one warning.
    struct FailureWarningKey: Hashable, Sendable {
        var identity: String
        var code: TokenExchangeError.Code
    }

    /// Logs a failed exchange: a warning if its key had none in the last 10 s, with the
    /// number held back since (`log.suppressed`); debug otherwise.
    func logFailure(_ error: TokenExchangeError, key: TokenKey) {
        let warningKey = FailureWarningKey(identity: key.identity, code: error.code)
        let suppressed = failureWarnings.withLock { $0.admit(warningKey, at: clock.now) }
        var metadata: Logger.Metadata = [
            "token.identity": "\(key.identity)", "token.scope": "\(key.scope)",
            "error.code": "\(error.code.rawValue)", "error.message": "\(error.message)",
            "upstream.codes": "\(error.upstream?.codes.map(String.init).joined(separator: ",") ?? "")",
            "upstream.trace_id": "\(error.upstream?.traceId ?? "")",
        ]
        guard let suppressed else {
            logger.debug("token exchange failed", metadata: metadata)
            return
        }
        if suppressed > 0 { metadata["log.suppressed"] = "\(suppressed)" }
        logger.warning("token exchange failed", metadata: metadata)
    }

    /// Reports the failures whose warnings were held back, once their 10 s are over.
    func logSuppressedFailures(at instant: C.Instant) {
        for (key, count) in failureWarnings.withLock({ $0.due(at: instant) }) {
            logger.warning(
                "token exchange failures not logged",
                metadata: [
                    "token.identity": "\(key.identity)", "error.code": "\(key.code.rawValue)", "log.suppressed": "\(count)",
                ])
        }
    }
}
