import Metrics
import TokenExchange

extension TokenCache {
    struct State: Sendable {
        var identities: [String: IdentityEntries] = [:]
        /// Set by `beginShutdown()`: the exchanges in flight and when each is abandoned.
        var drain: [Abandonment]?
        /// Whether the task that abandons them runs.
        var sweeping = false
        /// Restored tokens of identities registered only later (node mode's pods), by identity.
        var deferred: [String: [CacheSnapshot.Entry]] = [:]
    }

    /// A reference, mutated only under the cache's `Mutex`.
    final class IdentityEntries: @unchecked Sendable {
        var fetcher: any TokenFetching
        var entries: [Scope: Entry] = [:]
        /// `tokenbroker_cache_hits_total` / `_misses_total` for this identity, made once
        /// so the hot path only increments.
        let hits: Counter
        let misses: Counter
        /// Bounds this identity's exchanges in flight (`maxConcurrentExchangesPerIdentity`).
        let slots: ExchangeSlots
        /// Set when the token service throttled this identity: no exchange before `until`.
        var throttle: IdentityThrottle?

        init(identity: String, fetcher: any TokenFetching, concurrentExchanges: Int) {
            self.fetcher = fetcher
            self.slots = ExchangeSlots(limit: concurrentExchanges)
            self.hits = Counter(label: "tokenbroker_cache_hits_total", dimensions: [("identity", identity)])
            self.misses = Counter(label: "tokenbroker_cache_misses_total", dimensions: [("identity", identity)])
        }

        /// Evicts least recently requested entries beyond `limit`, never `keeping`.
        func evictBeyond(_ limit: Int, keeping: Scope) {
            while entries.count > max(limit, 1) {
                // Least recently requested first, sparing entries with an exchange in flight
                // (evicting one would let the next request start a second exchange).
                let candidates = entries.filter { $0.key != keeping }
                let idle = candidates.filter { $0.value.inFlight == nil }
                guard let victim = (idle.isEmpty ? candidates : idle).min(by: { $0.value.lastRequested < $1.value.lastRequested })?.key
                else { return }
                entries.removeValue(forKey: victim)
            }
        }
    }

    /// A reference (a hit updates it in place), mutated only under the cache's `Mutex`.
    final class Entry: @unchecked Sendable {
        var token: AccessToken?
        var validUntil: C.Instant?
        var refreshAt: C.Instant?
        var obtainedAt: C.Instant?
        var lastRequested: C.Instant
        var inFlight: Task<AccessToken, any Error>?
        /// Callers waiting for `inFlight`.
        var waiters: [Waiter] = []
        /// Set while exchanges fail; out of line, as it is large and most entries never
        /// need it (10,000 cached tokens are 10,000 entries).
        var failure: Failure?

        var failures: Int { failure?.count ?? 0 }
        var nextAttempt: C.Instant? { failure?.nextAttempt }

        /// The failure to wait out before another attempt at `instant`: none once the fetcher's
        /// input changed since it (a fixed token file is tried at once, not minutes later).
        func backoff(at instant: C.Instant, inputVersion: UInt64) -> Failure? {
            guard let failure, instant < failure.nextAttempt, failure.inputVersion == inputVersion else { return nil }
            return failure
        }
        var lastError: TokenExchangeError? { failure?.error }

        init(lastRequested: C.Instant) { self.lastRequested = lastRequested }

        func validToken(at instant: C.Instant, key: TokenKey) -> CachedToken? {
            guard let token, let validUntil, instant < validUntil else { return nil }
            return CachedToken(token: token, expiresIn: instant.duration(to: validUntil), key: key)
        }

        func isDueForRefresh(at instant: C.Instant, activeWindow: Duration) -> Bool {
            guard inFlight == nil, token != nil, let refreshAt, refreshAt <= instant else { return false }
            if let nextAttempt, instant < nextAttempt { return false }
            return lastRequested.duration(to: instant) <= activeWindow
        }
    }

    /// Failed exchanges since an entry's last success.
    final class Failure: @unchecked Sendable {
        let count: Int
        /// No exchange before this.
        let nextAttempt: C.Instant
        let error: TokenExchangeError
        /// The fetcher's `inputVersion` the failed exchange started with.
        let inputVersion: UInt64

        init(count: Int, nextAttempt: C.Instant, error: TokenExchangeError, inputVersion: UInt64) {
            self.count = count
            self.nextAttempt = nextAttempt
            self.error = error
            self.inputVersion = inputVersion
        }
    }

    /// A caller waiting for an exchange.
    typealias Waiter = @Sendable (Result<AccessToken, TokenExchangeError>) -> Void

    /// A token found valid under the lock; its hit is counted outside it.
    struct Hit {
        var token: AccessToken
        var left: Duration
        var hits: Counter
    }

    /// What `lookupOrJoin` decided under the lock.
    enum MissDecision {
        case hit(Hit)
        case unknownIdentity
        case waiting
        case backingOff(TokenExchangeError, stale: CachedToken?)
        case throttled(IdentityThrottle, stale: CachedToken?)
        case recentEnough(CachedToken)
    }
}
