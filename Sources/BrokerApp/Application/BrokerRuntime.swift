import AssertionSources
import FoundationEssentials
import Glibc
import Logging
import ServiceLifecycle
import Synchronization
import TokenCache
import TokenExchange
import UpstreamHTTP

/// The live identities: their assertion sources (each watching its file in a task),
/// their fetchers in the cache, and their entries in the `Broker`. Applying a new
/// configuration keeps identities whose settings did not change — with their
/// cached tokens — and replaces or drops the others.
final class BrokerRuntime: Service, Sendable {
    let cache: TokenCache<ContinuousClock>
    let broker: Broker
    /// Audit records of grants and denials (a service: it reports suppressed records).
    let audit: AuditLog<ContinuousClock>
    /// Node mode's services (the pods-directory watcher and the forgetting of service
    /// accounts with no pod left), empty without `kubernetes:`.
    let nodeServices: [any Service]
    private let transport: AsyncHTTPTransport
    private let logger: Logger
    private let watchers = Mutex<[String: Watcher]>([:])
    /// The configuration last applied (at start or by `reload(to:)`).
    let appliedConfiguration: Mutex<BrokerConfiguration>
    /// `compat.defaultIdentity`, read by the compatibility endpoints for each request.
    let compatDefaultIdentity: LiveValue<String?>
    /// The token files of `sinks:` (a service: it stops their writers at shutdown).
    let sinks: SinkService

    private struct Watcher: Sendable {
        var source: any ManagedAssertionSource
        var task: Task<Void, Never>
    }

    init(
        configuration: BrokerConfiguration, transport: AsyncHTTPTransport, metrics: BrokerMetrics,
        serviceAccountKeys: (any ServiceAccountTokenVerifier)?,
        logger: Logger
    ) {
        var cacheConfiguration = TokenCacheConfiguration()
        cacheConfiguration.maxScopesPerIdentity = configuration.cache.maxScopesPerIdentity
        cacheConfiguration.defaultMinimumValidity = .seconds(configuration.cache.minValiditySeconds)
        cacheConfiguration.minimumRefreshInterval = .seconds(configuration.cache.minRefreshIntervalSeconds)
        cacheConfiguration.maxConcurrentExchangesPerIdentity = configuration.cache.maxConcurrentExchanges
        self.cache = TokenCache(configuration: cacheConfiguration, clock: ContinuousClock(), now: { Date() }, logger: logger)
        self.audit = AuditLog(logger: Logger(label: AuditLog<ContinuousClock>.label), clock: ContinuousClock())
        let cache = self.cache
        let pods = configuration.kubernetes.map { settings in
            PodIdentities(settings: settings, registry: PodTokenRegistry(), cache: cache, logger: logger) { exchange, account in
                try IdentityFactory.exchanger(
                    exchange, name: "\(account.namespace).\(account.name)", transport: transport,
                    logger: logger.with("kubernetes.service_account", "\(account)"))
            }
        }
        self.nodeServices =
            pods.map { pods in
                [
                    KubeletPodWatcher(
                        podsDirectory: pods.settings.podsDirectory, audience: pods.settings.audience,
                        verifier: serviceAccountKeys ?? ServiceAccountKeys.none, registry: pods.registry, logger: logger), pods,
                ]
            } ?? []
        self.broker = Broker(
            identities: [], cache: cache, defaultMinimumValidity: configuration.cache.minValiditySeconds, logger: logger,
            rateLimiter: RateLimiter(
                ratePerSecond: configuration.limits.requestsPerSecondPerUID, burst: configuration.limits.requestBurstPerUID, clock: ContinuousClock()),
            audit: audit, pods: pods,
            countRequests: { metrics.countRequests(op: $0, outcome: $1, count: $2) })
        self.transport = transport
        self.logger = logger
        self.appliedConfiguration = Mutex(configuration)
        self.compatDefaultIdentity = LiveValue(configuration.compat.defaultIdentity)
        let sinks = SinkService(cache: cache, logger: logger)
        self.sinks = sinks
        broker.setSinkStatus { visible in sinks.status(visible: visible) }
    }

    /// Makes `configuration.identities` the served set, then `configuration.sinks` the files
    /// kept fresh. Returns the identity names kept, added and removed.
    @discardableResult
    func apply(_ configuration: BrokerConfiguration) -> (kept: [String], added: [String], removed: [String]) {
        // Before the cache changes: no connection repeats an answer across a reload.
        broker.endRepeatedAnswers()
        let old = Dictionary(uniqueKeysWithValues: broker.currentIdentities.map { ($0.configuration.name, $0) })
        let daemonUID = getuid()
        var next: [Broker.Identity] = []
        var kept: [String] = [], added: [String] = []
        for identity in configuration.identities {
            let policy = AccessPolicy(rules: identity.allow, daemonUID: daemonUID)
            if let existing = old[identity.name], existing.configuration.source == identity.source,
                existing.configuration.exchange == identity.exchange
            {
                // Same source and exchange: same tokens. Allow rules and prefetch may change freely.
                next.append(Broker.Identity(configuration: identity, source: existing.source, policy: policy))
                kept.append(identity.name)
                continue
            }
            let parts: IdentityFactory.Parts
            do {
                parts = try IdentityFactory.make(identity, transport: transport, logger: logger)
            } catch {
                logger.error("identity not served", metadata: ["token.identity": "\(identity.name)", "error.message": "\(error)"])
                continue
            }
            cache.register(identity: identity.name, fetcher: AssertionExchange(source: parts.source, exchanger: parts.exchanger))
            startWatching(identity.name, parts.source)
            next.append(Broker.Identity(configuration: identity, source: parts.source, policy: policy))
            added.append(identity.name)
        }
        let names = Set(next.map(\.configuration.name))
        let removed = old.keys.filter { !names.contains($0) }.sorted()
        for name in removed { cache.remove(identity: name) }
        broker.replaceIdentities(next)
        for name in old.keys where !kept.contains(name) { stopWatching(name, unless: next.first { $0.configuration.name == name }?.source) }
        sinks.apply(configuration.sinks, defaultRefreshSeconds: configuration.cache.minValiditySeconds)
        return (kept, added, removed)
    }

    /// Waits for shutdown, then stops every watcher.
    func run() async throws {
        try? await gracefulShutdown()
        let all = watchers.withLock { state in
            defer { state.removeAll() }
            return Array(state.values)
        }
        for watcher in all { watcher.task.cancel() }
        for watcher in all { await watcher.task.value }
    }

    private func startWatching(_ name: String, _ source: any ManagedAssertionSource) {
        let task = Task {
            do {
                try await source.run()
            } catch {
                self.logger.error("assertion watcher stopped", metadata: ["token.identity": "\(name)", "error.message": "\(error)"])
            }
        }
        let previous = watchers.withLock { $0.updateValue(Watcher(source: source, task: task), forKey: name) }
        previous?.task.cancel()
    }

    private func stopWatching(_ name: String, unless current: (any ManagedAssertionSource)?) {
        let watcher = watchers.withLock { state -> Watcher? in
            guard let watcher = state[name], watcher.source !== current else { return nil }
            return state.removeValue(forKey: name)
        }
        watcher?.task.cancel()
    }
}
