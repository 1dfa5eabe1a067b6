import Synchronization

/// At most `limit` exchanges of one identity run at once; the others wait their turn in
/// order. Single flight already makes a burst for one scope one exchange; this makes a
/// burst of many new scopes a queue rather than a burst on the token service (and keeps
/// the memory of exchanges in flight, which outlives them as heap fragmentation, small).
final class ExchangeSlots: Sendable {
    private struct State {
        var free: Int
        /// Waiters from `head` on, in arrival order (the consumed prefix is dropped now and then).
        var waiters: [CheckedContinuation<Void, Never>] = []
        var head = 0
    }

    private let state: Mutex<State>

    init(limit: Int) {
        state = Mutex(State(free: max(1, limit)))
    }

    /// Waits for a slot; pair with `release()`.
    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { state -> Bool in
                if state.free > 0 {
                    state.free -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    /// Gives the slot to the longest waiter, or frees it.
    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.head < state.waiters.count else {
                state.free += 1
                return nil
            }
            let next = state.waiters[state.head]
            state.head += 1
            if state.head == state.waiters.count || state.head >= 1024 {
                state.waiters.removeFirst(state.head)
                state.head = 0
            }
            return next
        }
        next?.resume()
    }
}
