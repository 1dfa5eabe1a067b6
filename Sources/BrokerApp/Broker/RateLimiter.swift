import Synchronization

/// A token bucket per caller uid (`limits.requestsPerSecondPerUID`, `requestBurstPerUID`):
/// one uid sending too fast is told to wait, every other uid is unaffected.
///
/// Buckets of idle uids (refilled completely) are dropped when many uids are tracked,
/// so the table stays small whatever uids connect.
final class RateLimiter<C: Clock>: Sendable where C.Duration == Duration {
    private let ratePerSecond: Double
    private let burst: Double
    private let clock: C
    private let buckets = Mutex<[UInt32: TokenBucket<C.Instant>]>([:])
    /// Tracked uids above which idle buckets are pruned.
    private let pruneThreshold: Int

    /// A limiter admitting `ratePerSecond` requests per second per uid with bursts of
    /// `burst`; a rate of 0 admits everything.
    init(ratePerSecond: Int, burst: Int, clock: C, pruneThreshold: Int = 1024) {
        self.ratePerSecond = Double(ratePerSecond)
        self.burst = Double(max(1, burst))
        self.clock = clock
        self.pruneThreshold = pruneThreshold
    }

    /// Whether the limiter admits everything.
    var isUnlimited: Bool { ratePerSecond == 0 }

    /// Counts one request of `uid` made at `instant` (read from the clock when not given):
    /// nil when admitted, else how long until the next request would be.
    func admit(uid: UInt32, at instant: C.Instant? = nil) -> Duration? {
        guard !isUnlimited else { return nil }
        let now = instant ?? clock.now
        return buckets.withLock { buckets in
            if buckets.count >= pruneThreshold, buckets[uid] == nil {
                buckets = buckets.filter { !$0.value.isFull(at: now) }
            }
            return buckets[uid, default: TokenBucket(ratePerSecond: ratePerSecond, capacity: burst, now: now)].take(at: now)
        }
    }

    /// uids with a bucket now (tests, and proof that the table stays bounded).
    var trackedUIDs: Int { buckets.withLock { $0.count } }
}
