import AssertionSources
import BrokerServer
import FoundationEssentials
import Glibc
import Logging
import Synchronization
import TokenBrokerProtocol
import TokenCache
import TokenExchange

/// The broker's answer to every protocol request: resolves the identity
/// (`Broker+Resolution`), authorizes the caller (`Broker+Authorization`), and serves from
/// the cache (`Broker+Responder`; the compatibility endpoints: `Broker+Compat`). This file:
/// the identity table and what a reload changes.
final class Broker: BrokerResponder {
    /// One configured identity with its live parts. A class: the request path passes
    /// it around without copying (and retaining) the whole configuration.
    final class Identity: Sendable {
        let configuration: IdentityConfiguration
        let source: any ManagedAssertionSource
        let policy: AccessPolicy

        init(configuration: IdentityConfiguration, source: any ManagedAssertionSource, policy: AccessPolicy) {
            self.configuration = configuration
            self.source = source
            self.policy = policy
        }
    }

    let cache: TokenCache<ContinuousClock>
    let identities: Mutex<[String: Identity]>
    /// Changes with every `replaceIdentities`.
    let identitiesGeneration = Atomic<UInt64>(0)
    /// Counts answered requests (metrics).
    let countRequests: @Sendable (_ op: String, _ outcome: String, _ count: Int) -> Void
    /// `cache.minValiditySeconds`, for requests that name no minimum; a reload may change it.
    let defaultMinimumValidity: Atomic<Int>
    let logger: Logger
    /// Whether `logger` takes debug records, so each answer skips even the check; updated
    /// by `logLevelChanged()` when a reload changes `log.level`.
    let logsEachAnswer: Atomic<Bool>
    /// The daemon's own uid: like root, it may read the configuration, so it is told which
    /// identity names do not exist.
    let daemonUID = getuid()
    /// Where the compatibility endpoints listen, once they do (for `status`).
    let compat = Mutex<CompatStatus?>(nil)
    /// The sinks of the identities a caller may use (for `status`).
    let sinkStatus = Mutex<(@Sendable (Set<String>) -> [SinkStatus])?>(nil)
    /// `limits.requestsPerSecondPerUID`: charged for token requests the cache cannot answer
    /// (upstream work) only; cached answers and refusals cost the token service nothing.
    let rateLimiter: RateLimiter<ContinuousClock>
    /// One record per grant and denial.
    let audit: AuditLog<ContinuousClock>
    /// Node mode (`kubernetes:`): callers in pods get their own pod's tokens.
    let pods: PodIdentities?

    init(
        identities: [Identity], cache: TokenCache<ContinuousClock>, defaultMinimumValidity: Int, logger: Logger,
        rateLimiter: RateLimiter<ContinuousClock>, audit: AuditLog<ContinuousClock>, pods: PodIdentities? = nil,
        countRequests: @escaping @Sendable (_ op: String, _ outcome: String, _ count: Int) -> Void = { _, _, _ in }
    ) {
        self.pods = pods
        self.rateLimiter = rateLimiter
        self.audit = audit
        self.countRequests = countRequests
        self.cache = cache
        self.identities = Mutex(Dictionary(uniqueKeysWithValues: identities.map { ($0.configuration.name, $0) }))
        self.defaultMinimumValidity = Atomic(defaultMinimumValidity)
        self.logger = logger
        self.logsEachAnswer = Atomic(logger.logLevel <= .debug)
    }

    /// Counts `count` answered requests of `op` with `outcome` (metrics).
    func countRequest(_ op: String, _ outcome: String, _ count: Int = 1) {
        countRequests(op, outcome, count)
    }

    /// Replaces the served identities (reload). Callers in flight keep the identity they
    /// resolved; answers connections repeat are resolved again.
    func replaceIdentities(_ new: [Identity]) {
        identities.withLock { table in
            table = Dictionary(uniqueKeysWithValues: new.map { ($0.configuration.name, $0) })
            identitiesGeneration.add(1, ordering: .releasing)
        }
    }

    /// Applies `limits.requestsPerSecondPerUID` and `requestBurstPerUID` from a reload.
    func reconfigureRateLimit(ratePerSecond: Int, burst: Int) {
        rateLimiter.reconfigure(ratePerSecond: ratePerSecond, burst: burst)
    }

    /// Applies `cache.minValiditySeconds` from a reload to the requests that follow.
    func setDefaultMinimumValidity(seconds: Int) {
        defaultMinimumValidity.store(seconds, ordering: .relaxed)
    }

    /// Reads the logger's level again (a reload changed `log.level`).
    func logLevelChanged() {
        logsEachAnswer.store(logger.logLevel <= .debug, ordering: .relaxed)
    }

    /// Ends the answers connections repeat now (a reload is about to change the cache).
    func endRepeatedAnswers() {
        identitiesGeneration.add(1, ordering: .releasing)
    }

    /// The identities now served.
    var currentIdentities: [Identity] {
        identities.withLock { Array($0.values) }
    }

    /// The identity whose client id, object id or resource id is `value` (ids compare
    /// case-insensitively, as Azure's do).
    func identityName(matching selector: CompatEndpoints.Selector) -> String? {
        let all = currentIdentities
        func same(_ a: String?, _ b: String) -> Bool { a.map { $0.lowercased() == b.lowercased() } ?? false }
        return all.first { identity in
            switch selector {
            case .clientId(let id):
                if case .entra(let entra) = identity.configuration.exchange { return same(entra.clientId, id) }
                return false
            case .objectId(let id): return same(identity.configuration.aliases.objectId, id)
            case .resourceId(let id): return same(identity.configuration.aliases.resourceId, id)
            }
        }?.configuration.name
    }

    /// The client id of identity `name`, for the compatibility responses.
    func clientId(of name: String) -> String? {
        guard case .entra(let entra) = identities.withLock({ $0[name] })?.configuration.exchange else { return nil }
        return entra.clientId
    }
}
