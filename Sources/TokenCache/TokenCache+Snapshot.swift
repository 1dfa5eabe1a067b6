import FoundationEssentials
import Glibc
import Synchronization
import TokenExchange

/// Warm restarts: the cache as a `CacheSnapshot` and back. Times cross the restart on
/// the wall clock (the monotonic clock starts again with the process).
extension TokenCache {
    /// Increases whenever a token is obtained or an identity's tokens are dropped.
    public var changeCount: UInt64 { changes.load(ordering: .relaxed) }

    /// Every valid cached token of the identities `fingerprint` knows (it returns nil for
    /// one whose tokens must not outlive the process), and the restored tokens still kept
    /// aside for identities not registered again yet.
    public func snapshot(fingerprint: (String) -> [UInt8]?) -> CacheSnapshot {
        let instant = clock.now
        let wallNow = now()
        func wall(_ other: C.Instant) -> Date {
            let offset = instant.duration(to: other).components
            return wallNow.addingTimeInterval(Double(offset.seconds) + Double(offset.attoseconds) / 1e18)
        }
        let entries = state.withLock { state in
            state.identities.sorted { $0.key < $1.key }.flatMap { name, identity -> [CacheSnapshot.Entry] in
                guard let digest = fingerprint(name) else { return [] }
                return identity.entries.compactMap { scope, entry -> CacheSnapshot.Entry? in
                    guard let token = entry.token, let validUntil = entry.validUntil, instant < validUntil else { return nil }
                    return CacheSnapshot.Entry(
                        identity: name, fingerprint: digest, scope: scope, token: token,
                        refreshAt: wall(entry.refreshAt ?? validUntil), lastRequested: wall(entry.lastRequested))
                }
            }
                + state.deferred.sorted { $0.key < $1.key }.flatMap { name, items in
                    items.filter { $0.token.expiresAt > wallNow && fingerprint(name) == $0.fingerprint }
                }
        }
        return CacheSnapshot(entries: entries)
    }

    /// Puts `snapshot`'s tokens back: those of registered identities whose `fingerprint`
    /// is unchanged, still valid, for scopes not cached already. Each keeps its refresh
    /// time; one whose time passed while the broker was down is refreshed at a random
    /// moment of the next `overdueSpread` (bounded by a quarter of its remaining validity),
    /// so a broker that was down for a while does not refresh everything at once.
    ///
    /// Tokens of identities not registered yet that `deferring` accepts (node mode's pods,
    /// registered when a pod first asks) are kept aside and put back by `register`.
    @discardableResult
    public func restore(
        _ snapshot: CacheSnapshot, fingerprint: (String) -> [UInt8]?, deferring: (String) -> Bool = { _ in false },
        overdueSpread: Duration = .seconds(60)
    ) -> RestoreSummary {
        let instant = clock.now
        let wallNow = now()
        var summary = RestoreSummary()
        var generator = SystemRandomNumberGenerator()
        state.withLock { state in
            for item in snapshot.entries {
                let known = state.identities[item.identity] != nil || deferring(item.identity)
                guard known else {
                    summary.unknownIdentity += 1
                    continue
                }
                guard fingerprint(item.identity) == item.fingerprint else {
                    summary.identityChanged += 1
                    continue
                }
                guard item.token.expiresAt.timeIntervalSince(wallNow) > 1 else {
                    summary.expired += 1
                    continue
                }
                guard let identity = state.identities[item.identity] else {
                    state.deferred[item.identity, default: []].append(item)
                    summary.deferred += 1
                    continue
                }
                if install(item, into: identity, at: instant, wallNow: wallNow, overdueSpread: overdueSpread, using: &generator) {
                    summary.restored += 1
                }
            }
        }
        return summary
    }

    /// Puts one restored token into `identity` (under the cache's lock); false when it has
    /// expired meanwhile or the scope is cached already.
    func install(
        _ item: CacheSnapshot.Entry, into identity: IdentityEntries, at instant: C.Instant, wallNow: Date, overdueSpread: Duration,
        using generator: inout some RandomNumberGenerator
    ) -> Bool {
        let left = item.token.expiresAt.timeIntervalSince(wallNow)
        guard left > 1, identity.entries[item.scope] == nil else { return false }
        let entry = Entry(lastRequested: instant.advanced(by: .seconds(-max(0, wallNow.timeIntervalSince(item.lastRequested)))))
        entry.token = item.token
        entry.validUntil = instant.advanced(by: .seconds(left))
        entry.obtainedAt = instant.advanced(by: .seconds(-max(0, wallNow.timeIntervalSince(item.token.issuedAt))))
        var refreshIn = item.refreshAt.timeIntervalSince(wallNow)
        if refreshIn <= 0 {
            let spread = min(Double(overdueSpread.components.seconds), left / 4)
            refreshIn = spread > 0 ? Double.random(in: 0...spread, using: &generator) : 0
        }
        entry.refreshAt = instant.advanced(by: .seconds(refreshIn))
        identity.entries[item.scope] = entry
        identity.evictBeyond(configuration.maxScopesPerIdentity, keeping: item.scope)
        return true
    }

    /// Drops kept-aside tokens that expired before their identity came back.
    func dropExpiredDeferred() {
        let wallNow = now()
        state.withLock { state in
            guard !state.deferred.isEmpty else { return }
            state.deferred = state.deferred.compactMapValues { items in
                let valid = items.filter { $0.token.expiresAt > wallNow }
                return valid.isEmpty ? nil : valid
            }
        }
    }
}

/// What `restore` did with a snapshot's entries.
public struct RestoreSummary: Sendable, Equatable, CustomStringConvertible {
    /// Tokens put back into the cache.
    public var restored = 0
    /// Tokens that had expired (or were about to).
    public var expired = 0
    /// Tokens of identities whose source or exchange settings changed.
    public var identityChanged = 0
    /// Tokens of identities no longer configured.
    public var unknownIdentity = 0
    /// Tokens kept aside for identities registered later (node mode's pods).
    public var deferred = 0

    /// Nothing yet.
    public init() {}

    public var description: String {
        "\(restored) restored, \(deferred) kept for later, \(expired) expired, \(identityChanged) of changed identities, \(unknownIdentity) of unknown identities"
    }
}
