public import FoundationEssentials
import Glibc
public import Logging
import Metrics
public import ServiceLifecycle
import Synchronization
import TokenExchange

/// One token per (identity, scope): single flight on misses, proactive refresh
/// ahead of expiry, stale-while-valid on failures, exponential backoff, and an
/// LRU bound per identity. A token service that throttles an identity pauses every
/// exchange of that identity, not only of the scope it refused (`TokenCache+Throttling`).
///
/// State sits behind a `Mutex` rather than in an actor so that the socket server
/// can serve a cache hit synchronously on its event loop (`cachedToken`), without
/// a hop to another executor. Deadlines live on the injected monotonic `clock`;
/// the wall clock `now` is used only to read token expiry times.
public final class TokenCache<C: Clock<Duration>>: Service, Sendable where C.Instant: Sendable {
    let configuration: TokenCacheConfiguration
    let clock: C
    let now: @Sendable () -> Date
    let logger: Logger
    let state: Mutex<State>
    /// "token exchange failed" warnings: one per (identity, error code) every 10 s.
    let failureWarnings = Mutex(LogThrottle<FailureWarningKey, C.Instant>())
    /// Told the key of each token an exchange stored (`observeStoredTokens`).
    let storedTokenObservers = Mutex<[@Sendable (TokenKey) -> Void]>([])
    /// Counts changes to the cached tokens, so a writer of snapshots can tell whether
    /// there is anything new to write (`changeCount`).
    let changes = Atomic<UInt64>(0)

    /// Creates an empty cache.
    public init(configuration: TokenCacheConfiguration = .init(), clock: C, now: @escaping @Sendable () -> Date, logger: Logger) {
        self.configuration = configuration
        self.clock = clock
        self.now = now
        self.logger = logger
        self.state = Mutex(State())
    }

    // MARK: Identities

    /// Adds `identity` or replaces its fetcher. Replacing keeps cached tokens only
    /// when `keepTokens` is true (the identity's settings did not change).
    /// A new identity receives the tokens a warm restart kept for it (`restore(_:fingerprint:deferring:)`).
    public func register(identity: String, fetcher: any TokenFetching, keepTokens: Bool = false) {
        let (instant, wallNow) = (clock.now, now())
        state.withLock { state in
            if keepTokens, let existing = state.identities[identity] {
                existing.fetcher = fetcher
            } else {
                let entries = IdentityEntries(
                    identity: identity, fetcher: fetcher, concurrentExchanges: configuration.maxConcurrentExchangesPerIdentity)
                state.identities[identity] = entries
                var generator = SystemRandomNumberGenerator()
                for item in state.deferred.removeValue(forKey: identity) ?? [] {
                    _ = install(item, into: entries, at: instant, wallNow: wallNow, overdueSpread: .seconds(60), using: &generator)
                }
            }
        }
    }

    /// Drops `identity` and its tokens.
    public func remove(identity: String) {
        _ = state.withLock { $0.identities.removeValue(forKey: identity) }
        changes.add(1, ordering: .relaxed)
    }

    /// Starts the one exchange for `key`; the task records its own outcome.
    func startFetch(key: TokenKey, identity: IdentityEntries, into entry: Entry) -> Task<AccessToken, any Error> {
        let (fetcher, slots) = (identity.fetcher, identity.slots)
        return Task { [self] in
            await slots.acquire()
            defer { slots.release() }
            // Queued behind an exchange the token service throttled: not sent.
            if let error = throttledError(identity: identity, key: key) {
                for waiter in record(.failure(error), for: key, into: entry, identity: identity, sent: false) { waiter(.failure(error)) }
                throw error
            }
            let started = clock.now
            let inputVersion = fetcher.inputVersion  // before the fetch reads its input
            let duration = Timer(label: "tokenbroker_upstream_exchange_duration_seconds", dimensions: [("identity", key.identity)])
            func count(_ result: String) {
                Counter(label: "tokenbroker_upstream_exchanges_total", dimensions: [("identity", key.identity), ("result", result)]).increment()
                duration.recordNanoseconds(started.duration(to: clock.now).nanoseconds)
            }
            do throws(TokenExchangeError) {
                let token = try await fetcher.fetchToken(for: key.scope)
                count("ok")
                let waiters = record(.success(token), for: key, into: entry, identity: identity)
                for waiter in waiters { waiter(.success(token)) }
                for observer in storedTokenObservers.withLock({ $0 }) { observer(key) }
                logger.info(
                    "token obtained",
                    metadata: [
                        "token.identity": "\(key.identity)", "token.scope": "\(key.scope)",
                        "token.expires_at": "\(Int(token.expiresAt.timeIntervalSince1970))",
                        "upstream.duration_ms": "\(started.duration(to: clock.now).milliseconds)",
                    ])
                return token
            } catch {
                count(error.code.rawValue)
                logFailure(error, key: key)  // before the callers hear of it, so a test's log is complete
                let waiters = record(.failure(error), for: key, into: entry, identity: identity, inputVersion: inputVersion)
                for waiter in waiters { waiter(.failure(error)) }
                throw error
            }
        }
    }

    /// Records the outcome of the exchange started for `started`; returns the callers who
    /// waited for it (each to be told, outside the lock). An exchange that was not `sent`
    /// (its identity was throttled meanwhile) leaves no failure behind.
    private func record(
        _ result: Result<AccessToken, TokenExchangeError>, for key: TokenKey, into started: Entry, identity: IdentityEntries, sent: Bool = true,
        inputVersion: UInt64 = 0
    ) -> [Waiter] {
        let instant = clock.now
        let wallNow = now()
        return state.withLock { state in
            let waiters = started.waiters
            started.waiters = []
            started.inFlight = nil
            guard sent else { return waiters }
            // Only into the very entry the fetch was started for: if it was evicted, or its
            // identity removed or re-registered by a reload (another app, other allow rules),
            // the result belongs to nobody and is dropped (its waiters still hear of it).
            guard let entry = state.identities[key.identity]?.entries[key.scope], entry === started else { return waiters }
            switch result {
            case .success(let token):
                var generator = SystemRandomNumberGenerator()
                let left = token.expiresAt.timeIntervalSince(wallNow)
                let refreshIn = configuration.refreshPolicy.refreshDelay(for: token, using: &generator) - wallNow.timeIntervalSince(token.issuedAt)
                entry.token = token
                entry.obtainedAt = instant
                entry.validUntil = instant.advanced(by: .seconds(left))
                entry.refreshAt = instant.advanced(by: .seconds(max(0, refreshIn)))
                entry.failure = nil
                changes.add(1, ordering: .relaxed)
            case .failure(let error):
                var generator = SystemRandomNumberGenerator()
                let attempt = entry.failures + 1
                let wait = configuration.refreshPolicy.backoff(attempt: attempt, retryAfter: error.retryAfter, using: &generator)
                entry.failure = Failure(count: attempt, nextAttempt: instant.advanced(by: wait), error: error, inputVersion: inputVersion)
                if error.code == .throttled, state.identities[key.identity] === identity {
                    identity.pause(until: instant.advanced(by: wait), cause: error)
                }
            }
            return waiters
        }
    }

    // MARK: Refreshing

    /// Starts exchanges for every entry whose refresh is due and that was requested
    /// within the active window, then waits for them; first reports failures whose
    /// warnings were held back. `run()` calls this every tick; tests call it after
    /// advancing a manual clock.
    public func refreshDue() async {
        let instant = clock.now
        logSuppressedFailures(at: instant)
        dropExpiredDeferred()
        let tasks: [Task<AccessToken, any Error>] = state.withLock { state in
            var started: [Task<AccessToken, any Error>] = []
            guard state.drain == nil else { return started }  // shutting down: nothing new on our own account
            for (identity, entries) in state.identities where !entries.isThrottled(at: instant) {
                for (scope, entry) in entries.entries where entry.isDueForRefresh(at: instant, activeWindow: configuration.activeWindow) {
                    let task = startFetch(key: TokenKey(identity: identity, scope: scope), identity: entries, into: entry)
                    entry.inFlight = task
                    started.append(task)
                }
            }
            return started
        }
        for task in tasks { _ = try? await task.value }
    }

    /// Refreshes due tokens every `refreshTick` until cancelled or shut down gracefully.
    public func run() async throws {
        // Shutdown cancels the sleep; that is the normal way out, not an error.
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await self.clock.sleep(for: self.configuration.refreshTick)
                await self.refreshDue()
            }
        }
    }

    // MARK: Introspection

    /// The cached scopes of `identity`, most recently requested first.
    public func snapshot(identity: String) -> [CacheEntrySnapshot] {
        let instant = clock.now
        return state.withLock { state in
            guard let entries = state.identities[identity]?.entries else { return [] }
            return entries.sorted { $0.value.lastRequested > $1.value.lastRequested }.map { scope, entry in
                CacheEntrySnapshot(
                    scope: scope,
                    expiresIn: entry.validUntil.map { instant.duration(to: $0) }.flatMap { $0 > .zero ? $0 : nil },
                    lastError: entry.lastError)
            }
        }
    }

    /// How many tokens are cached in all.
    public var count: Int {
        state.withLock { $0.identities.values.reduce(0) { $0 + $1.entries.values.filter { $0.token != nil }.count } }
    }
}

extension Duration {
    /// Whole nanoseconds (saturating).
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : product &+ attoseconds / 1_000_000_000
    }

    /// Whole milliseconds.
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
