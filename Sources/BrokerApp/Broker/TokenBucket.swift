/// A token bucket: `capacity` tokens, refilled at `ratePerSecond`; taking one either
/// succeeds or says how long until one is there. A value type driven by the instants it
/// is given, so it has no clock of its own.
struct TokenBucket<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    /// Tokens added per second.
    let ratePerSecond: Double
    /// Most tokens held (the burst).
    let capacity: Double
    private(set) var tokens: Double
    private var updated: Instant

    /// A full bucket at `now`.
    init(ratePerSecond: Double, capacity: Double, now: Instant) {
        self.ratePerSecond = ratePerSecond
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now
    }

    /// Takes one token at `now`: nil when taken, else the wait until one is available.
    mutating func take(at now: Instant) -> Duration? {
        refill(at: now)
        if tokens >= 1 {
            tokens -= 1
            return nil
        }
        guard ratePerSecond > 0 else { return .seconds(Int64.max / 2) }
        return .seconds((1 - tokens) / ratePerSecond)
    }

    /// Whether the bucket has refilled completely by `now` (its owner is idle).
    func isFull(at now: Instant) -> Bool {
        var copy = self
        copy.refill(at: now)
        return copy.tokens >= capacity
    }

    private mutating func refill(at now: Instant) {
        let elapsed = updated.duration(to: now)
        guard elapsed > .zero else { return }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(capacity, tokens + seconds * ratePerSecond)
        updated = now
    }
}
