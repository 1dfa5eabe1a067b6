import Synchronization

extension TokenCache {
    /// Calls `observer` with the key of every token an exchange stores (a miss, a caller's
    /// refresh or a proactive one), outside the cache's lock and after the waiting callers
    /// were answered. It must return quickly: it runs on the exchange's task. Sink writers
    /// use it to write a new token as soon as the cache has it, without polling.
    public func observeStoredTokens(_ observer: @escaping @Sendable (TokenKey) -> Void) {
        storedTokenObservers.withLock { $0.append(observer) }
    }
}
