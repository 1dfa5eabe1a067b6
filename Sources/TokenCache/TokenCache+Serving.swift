import FoundationEssentials
import Metrics
import Synchronization
public import TokenExchange

/// Serving: the hot path's look-up, and one `lookupOrJoin` under one lock for a miss.
extension TokenCache {
    /// The cached token for `key` if it is valid for at least `minimumValidity`;
    /// nil otherwise. Never waits: this is the hot path.
    @_specialize(exported:true,where C == ContinuousClock)
    public func cachedToken(for key: TokenKey, minimumValidity: Duration? = nil) -> CachedToken? {
        let instant = clock.now
        let minimum = minimumValidity ?? configuration.defaultMinimumValidity
        let hit = state.withLock { state in
            // Entries are references: one lookup per level, and the hit is recorded
            // through the reference, without writing the dictionaries back.
            state.identities[key.identity].flatMap { $0.hit(key.scope, at: instant, minimum: minimum) }
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

    /// A token for `key` valid for at least `minimumValidity` (default 300 s): the
    /// `lookupOrJoin` of a caller that can suspend.
    public func token(for key: TokenKey, minimumValidity: Duration? = nil) async throws(TokenExchangeError) -> CachedToken {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<CachedToken, TokenExchangeError>, Never>) in
            lookupOrJoin(key, minimumValidity: minimumValidity) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// The cached token for `key` if it is valid for at least `minimumValidity`, else the
    /// outcome of the one exchange for `key`, joined or started: decided under one lock, so
    /// a token stored since the caller's own `cachedToken` is served, not fetched again.
    /// `completion` is called exactly once, at once or by the exchange's task when it ends.
    ///
    /// Concurrent misses for one key share one upstream exchange. If the exchange fails
    /// while an older token is still valid, the older token is served. While backing off
    /// after a failure, the last error is returned without calling upstream.
    ///
    /// A completion rather than a suspension: a caller waiting for an exchange is then a
    /// closure in a list rather than a suspended task with its frames (several KiB), so a
    /// burst of hundreds of requests for new scopes costs little, and leaves less
    /// freed-but-kept heap behind.
    public func lookupOrJoin(
        _ key: TokenKey, minimumValidity: Duration? = nil, completion: @escaping @Sendable (Result<CachedToken, TokenExchangeError>) -> Void
    ) {
        let instant = clock.now
        let minimum = minimumValidity ?? configuration.defaultMinimumValidity
        let waiter: Waiter = { [self] result in completion(outcome(of: result, for: key)) }
        var startsSweeper = false
        let decision: MissDecision = state.withLock { state in
            guard let identity = state.identities[key.identity] else { return .unknownIdentity }
            if let hit = identity.hit(key.scope, at: instant, minimum: minimum) { return .hit(hit) }
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
            if let failure = entry.backoff(at: instant, inputVersion: identity.fetcher.inputVersion) {
                return .backingOff(failure.error, stale: entry.validToken(at: instant, key: key))
            }
            let task = startFetch(key: key, identity: identity, into: entry)
            entry.inFlight = task
            entry.waiters.append(waiter)
            if state.drain != nil {
                startsSweeper = state.noteDraining(entry, task: task, deadline: instant.advanced(by: configuration.shutdownGrace))
            }
            return .waiting
        }
        if startsSweeper { startSweeper() }
        switch decision {
        case .hit(let hit):
            hit.hits.increment()
            completion(.success(CachedToken(token: hit.token, expiresIn: hit.left, key: key, hits: hit.hits)))
        case .unknownIdentity:
            completion(
                .failure(
                    TokenExchangeError(code: .internal, message: "identity '\(key.identity)' is not registered with the cache", isRetryable: false)))
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
            let left = Duration.seconds(max(0, token.expiresAt.timeIntervalSince(now())))
            return .success(CachedToken(token: token, expiresIn: left, key: key))
        case .failure(let error):
            // A failed refresh must not take away a token that still works.
            if let stale = state.withLock({ $0.identities[key.identity]?.entries[key.scope]?.validToken(at: clock.now, key: key) }) {
                return .success(stale)
            }
            return .failure(error)
        }
    }
}

extension TokenCache.IdentityEntries {
    /// A token cached for `scope` valid for at least `minimum` at `instant`, marked as
    /// requested then; nil when there is none. Under the cache's lock.
    func hit(_ scope: Scope, at instant: C.Instant, minimum: Duration) -> TokenCache<C>.Hit? {
        guard let entry = entries[scope], let token = entry.token, let validUntil = entry.validUntil else { return nil }
        let left = instant.duration(to: validUntil)
        guard left >= minimum else { return nil }
        entry.lastRequested = instant
        return TokenCache.Hit(token: token, left: left, hits: hits)
    }
}
