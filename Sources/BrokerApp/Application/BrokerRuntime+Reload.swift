import Logging
import Synchronization

/// What a SIGHUP reload did.
struct ReloadOutcome: Sendable, Equatable {
    /// Identities kept with their cached tokens, added, and removed.
    var kept: [String], added: [String], removed: [String]
    /// Other settings that took effect at once (`log.level`, the request rate,
    /// `cache.minValiditySeconds`, `compat.defaultIdentity`, `sinks`).
    var applied: [String]
    /// Settings that changed in the file but take effect at the next start.
    var needRestart: [String]
}

extension BrokerRuntime {
    /// Applies a re-read configuration: its identities (see `apply`), `log.level`, the
    /// per-uid request rate, `cache.minValiditySeconds`, `compat.defaultIdentity` and `sinks` at once,
    /// and a list of the other changed keys, which wait for a restart.
    ///
    /// Throws, changing nothing, when the configuration has no identity and does not say
    /// `allowNoIdentities: true`: an emptied, truncated or comments-only file must not
    /// turn every caller away.
    func reload(to configuration: BrokerConfiguration) throws(ConfigurationError) -> ReloadOutcome {
        // Node mode serves pods without any identity: a file that keeps `kubernetes:` is not empty.
        if configuration.identities.isEmpty, !configuration.allowNoIdentities, configuration.kubernetes == nil {
            throw ConfigurationError(
                origin: "reloaded configuration",
                issues: [
                    .init(
                        path: "identities",
                        message:
                            "the file defines no identities (empty, comments only, or identities: []); refusing to leave every caller forbidden. "
                            + "To serve none on purpose, set allowNoIdentities: true")
                ])
        }
        let previous = appliedConfiguration.withLock { applied in
            defer { applied = configuration }
            return applied
        }
        let changed = ConfigurationChanges.changedKeys(from: previous, to: configuration)
        var applied: [String] = []
        if changed.contains("log.level"), let level = Logger.Level(rawValue: configuration.log.level) {
            LiveLogLevel.shared.level = level
            broker.logLevelChanged()
            applied.append("log.level")
        }
        let rateKeys = changed.filter { $0 == "limits.requestsPerSecondPerUID" || $0 == "limits.requestBurstPerUID" }
        if !rateKeys.isEmpty {
            broker.reconfigureRateLimit(ratePerSecond: configuration.limits.requestsPerSecondPerUID, burst: configuration.limits.requestBurstPerUID)
            applied += rateKeys
        }
        if changed.contains("compat.defaultIdentity") {
            compatDefaultIdentity.current = configuration.compat.defaultIdentity
            applied.append("compat.defaultIdentity")
        }
        if changed.contains("cache.minValiditySeconds") {
            broker.setDefaultMinimumValidity(seconds: configuration.cache.minValiditySeconds)
            applied.append("cache.minValiditySeconds")
        }
        if previous.sinks != configuration.sinks { applied.append("sinks") }
        let identities = apply(configuration)
        return ReloadOutcome(
            kept: identities.kept, added: identities.added, removed: identities.removed, applied: applied,
            needRestart: changed.filter { !applied.contains($0) })
    }

    /// Logs what `reload(to:)` did: the keys waiting for a restart first (a warning: the
    /// file and the running daemon differ), then `configuration reloaded`.
    func logReload(_ outcome: ReloadOutcome, logger: Logger) {
        if !outcome.needRestart.isEmpty {
            logger.warning(
                "reload: \(outcome.needRestart.joined(separator: ", ")) changed and take effect at the next restart",
                metadata: ["reload.restart_keys": "\(outcome.needRestart.joined(separator: ","))"])
        }
        logger.info(
            "configuration reloaded",
            metadata: [
                "reload.kept": "\(outcome.kept.joined(separator: ","))", "reload.added": "\(outcome.added.joined(separator: ","))",
                "reload.removed": "\(outcome.removed.joined(separator: ","))", "reload.applied": "\(outcome.applied.joined(separator: ","))",
            ])
    }
}
