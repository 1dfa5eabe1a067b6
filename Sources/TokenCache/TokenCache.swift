public import FoundationEssentials
import Glibc
public import Logging
import Metrics
public import ServiceLifecycle
import Synchronization
public import TokenExchange

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
                let entries = IdentityEntries(identity: identity, fetcher: fetcher, concurrentExchanges: configuration.maxConcurrentExchangesPerIdentity)
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

    // MARK: Serving

    /// The cached token for `key` if it is valid for at least `minimumValidity`;
    /// nil otherwise. Never waits: this is the hot path.
    @_specialize(exported: true, where C == ContinuousClock)
    public func cachedToken(for key: TokenKey, minimumValidity: Duration? = nil) -> CachedToken? {
        let instant = clock.now
        let minimum = minimumValidity ?? configuration.defaultMinimumValidity
        let hit = state.withLock { state -> (token: AccessToken, left: Duration, hits: Counter)? in
            // Entries are references: one lookup per level, and the hit is recorded
            // through the reference, without writing the dictionaries back.
            guard let identity = state.identities[key.identity], let entry = identity.entries[key.scope],
                let token = entry.token, let validUntil = entry.validUntil
            else { return nil }
            let left = instant.duration(to: validUntil)
            guard left >= minimum else { return nil }
            entry.lastRequested = instant
            return (token, left, identity.hits)
        }
        guard let hit else { return nil }
        hit.hits.increment()  // outside the lock: the other event loops wait on it
        return CachedToken(token: hit.token, expiresIn: hit.left, key: key, hits: hit.hits)
    }

    /// Whether a still-valid token is cached for `key`. A look only: unlike `cachedToken`,
    /// it neither counts as a hit nor marks the scope as recently requested.
    public func holdsToken(for key: TokenKey) -> Bool {
        let instant = clock.now
        return state.withLock { state in
            state.identities[key.identity]?.entries[key.scope]?.validToken(at: instant, key: key) != nil
        }
    }

    /// A token for `key` valid for at least `minimumValidity` (default 300 s).
    ///
    /// Concurrent misses for one key share one upstream exchange. If the exchange
    /// fails while an older token is still valid, the older token is served. While
    /// backing off after a failure, the last error is returned without calling upstream.
    public func token(for key: TokenKey, minimumValidity: Duration? = nil) async throws(TokenExchangeError) -> CachedToken {
        if let hit = cachedToken(for: key, minimumValidity: minimumValidity) { return hit }
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<CachedToken, TokenExchangeError>, Never>) in
            token(for: key, minimumValidity: minimumValidity) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// `token(for:minimumValidity:)` with a completion instead of a suspension: `completion`
    /// is called exactly once, at once or by the exchange's task when it ends.
    ///
    /// A caller waiting for an exchange is then a closure in a list rather than a suspended
    /// task with its frames (several KiB): a burst of hundreds of requests for new scopes
    /// costs little, and leaves less freed-but-kept heap behind.
    public func token(
        for key: TokenKey, minimumValidity: Duration? = nil, completion: @escaping @Sendable (Result<CachedToken, TokenExchangeError>) -> Void
    ) {
        if let hit = cachedToken(for: key, minimumValidity: minimumValidity) { return completion(.success(hit)) }
        let instant = clock.now
        let waiter: Waiter = { [self] result in completion(outcome(of: result, for: key)) }
        var startsSweeper = false
        let decision: MissDecision = state.withLock { state in
            guard let identity = state.identities[key.identity] else { return .unknownIdentity }
            identity.misses.increment()
            let entry = identity.entries[key.scope] ?? Entry(lastRequested: instant)
            entry.lastRequested = instant
            defer {
                identity.entries[key.scope] = entry
                identity.evictBeyond(configuration.maxScopesPerIdentity, keeping: key.scope)
            }
            if entry.inFlight != nil {
                entry.waiters.append(waiter)
                return .waiting
            }
            if let obtainedAt = entry.obtainedAt, obtainedAt.duration(to: instant) < configuration.minimumRefreshInterval,
                let valid = entry.validToken(at: instant, key: key)
            {
                return .recentEnough(valid)
            }
            if let throttle = identity.throttle, instant < throttle.until {
                return .throttled(throttle, stale: entry.validToken(at: instant, key: key))
            }
            if let notBefore = entry.nextAttempt, instant < notBefore, let error = entry.lastError {
                return .backingOff(error, stale: entry.validToken(at: instant, key: key))
            }
            let task = startFetch(key: key, identity: identity, into: entry)
            entry.inFlight = task
            entry.waiters.append(waiter)
            if state.drain != nil { startsSweeper = state.noteDraining(entry, task: task, deadline: instant.advanced(by: configuration.shutdownGrace)) }
            return .waiting
        }
        if startsSweeper { startSweeper() }
        switch decision {
        case .unknownIdentity:
            completion(.failure(TokenExchangeError(code: .internal, message: "identity '\(key.identity)' is not registered with the cache", isRetryable: false)))
        case .recentEnough(let token):
            completion(.success(token))
        case .backingOff(let error, let stale):
            completion(stale.map { .success($0) } ?? .failure(error))
        case .throttled(let throttle, let stale):
            completion(stale.map { .success($0) } ?? .failure(throttle.error(identity: key.identity, at: instant)))
        case .waiting:
            break
        }
    }

    /// What a caller who waited for an exchange gets.
    private func outcome(of result: Result<AccessToken, TokenExchangeError>, for key: TokenKey) -> Result<CachedToken, TokenExchangeError> {
        switch result {
        case .success(let token):
            return .success(served(token, key: key))
        case .failure(let error):
            // A failed refresh must not take away a token that still works.
            if let stale = state.withLock({ $0.identities[key.identity]?.entries[key.scope]?.validToken(at: clock.now, key: key) }) {
                return .success(stale)
            }
            return .failure(error)
        }
    }

    private func served(_ token: AccessToken, key: TokenKey) -> CachedToken {
        let left = Duration.seconds(max(0, token.expiresAt.timeIntervalSince(now())))
        return CachedToken(token: token, expiresIn: left, key: key)
    }

    /// Starts the one exchange for `key`; the task records its own outcome.
    private func startFetch(key: TokenKey, identity: IdentityEntries, into entry: Entry) -> Task<AccessToken, any Error> {
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
                logger.info("token obtained", metadata: [
                    "token.identity": "\(key.identity)", "token.scope": "\(key.scope)",
                    "token.expires_at": "\(Int(token.expiresAt.timeIntervalSince1970))",
                    "upstream.duration_ms": "\(started.duration(to: clock.now).milliseconds)",
                ])
                return token
            } catch {
                count(error.code.rawValue)
                logFailure(error, key: key)  // before the callers hear of it, so a test's log is complete
                let waiters = record(.failure(error), for: key, into: entry, identity: identity)
                for waiter in waiters { waiter(.failure(error)) }
                throw error
            }
        }
    }

    /// Records the outcome of the exchange started for `started`; returns the callers who
    /// waited for it (each to be told, outside the lock). An exchange that was not `sent`
    /// (its identity was throttled meanwhile) leaves no failure behind.
    private func record(
        _ result: Result<AccessToken, TokenExchangeError>, for key: TokenKey, into started: Entry, identity: IdentityEntries, sent: Bool = true
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
                entry.failure = Failure(count: attempt, nextAttempt: instant.advanced(by: wait), error: error)
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
