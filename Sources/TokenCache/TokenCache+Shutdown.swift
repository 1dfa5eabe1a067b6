import Synchronization
import TokenExchange

/// Shutdown: a stopping broker answers every caller it has read, without waiting for a
/// token service that hangs. Each exchange in flight when shutdown begins, and each one a
/// draining connection starts afterwards, has `shutdownGrace` of its own to finish (a
/// restart loses no request to a token service that answers); then it is cancelled and
/// its callers are answered `shutting_down` (retryable: the next instance answers).
extension TokenCache {
    /// Begins the drain (again is a no-op). Refreshes stop; requests still start exchanges.
    public func beginShutdown() {
        let deadline = clock.now.advanced(by: configuration.shutdownGrace)
        let starts = state.withLock { state -> Bool in
            guard state.drain == nil else { return false }
            state.drain = []
            var starts = false
            for identity in state.identities.values {
                for entry in identity.entries.values {
                    if let task = entry.inFlight { starts = state.noteDraining(entry, task: task, deadline: deadline) || starts }
                }
            }
            return starts
        }
        if starts { startSweeper() }
    }

    /// Abandons, every 100 ms, the exchanges whose grace is over; ends when none is left.
    func startSweeper() {
        Task { [self] in
            while abandonExpired() {
                try? await clock.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Cancels the exchanges past their deadline and answers their callers; false once no
    /// exchange is left to watch (the sweeper stops; a later one starts it again).
    private func abandonExpired() -> Bool {
        let instant = clock.now
        let (tasks, waiters, more) = state.withLock { state -> ([Task<AccessToken, any Error>], [Waiter], Bool) in
            var tasks: [Task<AccessToken, any Error>] = []
            var waiters: [Waiter] = []
            state.drain?.removeAll { record in
                // Finished, or followed by another exchange with a deadline of its own.
                guard record.entry.inFlight == record.task else { return true }
                guard record.deadline <= instant else { return false }
                tasks.append(record.task)
                waiters += record.entry.waiters
                record.entry.waiters = []
                return true
            }
            let more = !(state.drain?.isEmpty ?? true)
            if !more { state.sweeping = false }
            return (tasks, waiters, more)
        }
        for task in tasks { task.cancel() }
        for waiter in waiters { waiter(.failure(Self.shuttingDownError)) }
        return more
    }

    static var shuttingDownError: TokenExchangeError {
        TokenExchangeError(code: .shuttingDown, message: "the broker is shutting down; ask again (a restarted broker answers)", isRetryable: true)
    }

    /// One exchange watched during the drain.
    struct Abandonment: @unchecked Sendable {  // the entry is mutated only under the cache's lock
        let entry: Entry
        let task: Task<AccessToken, any Error>
        let deadline: C.Instant
    }
}

extension TokenCache.State {
    /// Watches `task` until `deadline`; true when the sweeper must be started.
    mutating func noteDraining(_ entry: TokenCache.Entry, task: Task<AccessToken, any Error>, deadline: C.Instant) -> Bool {
        drain?.append(.init(entry: entry, task: task, deadline: deadline))
        defer { sweeping = true }
        return !sweeping
    }
}
