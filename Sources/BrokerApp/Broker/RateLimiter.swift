import Synchronization

/// A token bucket per caller uid (`limits.requestsPerSecondPerUID`, `requestBurstPerUID`):
/// one uid sending too fast is told to wait, every other uid is unaffected. The broker
/// counts only requests that make upstream work (cache misses, forced refreshes).
///
/// Buckets of idle uids (refilled completely) are dropped when many uids are tracked,
/// so the table stays small whatever uids connect.
final class RateLimiter<C: Clock>: Sendable where C.Duration == Duration {
    /// The rate and burst (changed by a reload) with the buckets made for them.
    private struct State {
        var ratePerSecond: Double
        var burst: Double
        var buckets: [UInt32: TokenBucket<C.Instant>] = [:]
    }

    private let clock: C
    private let state: Mutex<State>
    /// A rate of 0: everything is admitted without taking the lock.
    private let unlimited: Atomic<Bool>
    /// Tracked uids above which idle buckets are pruned.
    private let pruneThreshold: Int

    /// A limiter admitting `ratePerSecond` requests per second per uid with bursts of
    /// `burst`; a rate of 0 admits everything.
    init(ratePerSecond: Int, burst: Int, clock: C, pruneThreshold: Int = 1024) {
        self.state = Mutex(State(ratePerSecond: Double(ratePerSecond), burst: Double(max(1, burst))))
        self.unlimited = Atomic(ratePerSecond == 0)
        self.clock = clock
        self.pruneThreshold = pruneThreshold
    }

    /// Whether the limiter admits everything.
    var isUnlimited: Bool { unlimited.load(ordering: .relaxed) }

    /// Applies a new rate and burst (a reload). Every uid starts again with a full bucket
    /// of the new size.
    func reconfigure(ratePerSecond: Int, burst: Int) {
        state.withLock { $0 = State(ratePerSecond: Double(ratePerSecond), burst: Double(max(1, burst))) }
        unlimited.store(ratePerSecond == 0, ordering: .relaxed)
    }

    /// Counts one request of `uid` made at `instant` (read from the clock when not given):
    /// nil when admitted, else how long until the next request would be.
    func admit(uid: UInt32, at instant: C.Instant? = nil) -> Duration? {
        guard !isUnlimited else { return nil }
        let now = instant ?? clock.now
        return state.withLock { state in
            guard state.ratePerSecond > 0 else { return nil }
            if state.buckets.count >= pruneThreshold, state.buckets[uid] == nil {
                state.buckets = state.buckets.filter { !$0.value.isFull(at: now) }
            }
            return state.buckets[uid, default: TokenBucket(ratePerSecond: state.ratePerSecond, capacity: state.burst, now: now)].take(at: now)
        }
    }

    /// uids with a bucket now (tests, and proof that the table stays bounded).
    var trackedUIDs: Int { state.withLock { $0.buckets.count } }
}
