/// At most one log line per key every `interval`; the lines held back in between are
/// counted, and the count goes out with the key's next line (or from `due(at:)`, as a
/// summary), so a flood costs one line per key per interval and loses no number.
///
/// A value type driven by the instants it is given — no clock, no lock — shared by the
/// cache's "token exchange failed" warning and the server's connection-refused warning.
/// Keys should come from a small set (identity and error code, a refusal reason):
/// `due(at:)` forgets keys that have been quiet for an interval.
public struct LogThrottle<Key: Hashable & Sendable, Instant: InstantProtocol & Sendable>: Sendable where Instant.Duration == Duration {
    /// The shortest time between two lines for one key.
    public let interval: Duration
    private var keys: [Key: (last: Instant, suppressed: Int)] = [:]

    /// A throttle letting one line per key through every `interval` (default 10 s).
    public init(interval: Duration = .seconds(10)) {
        self.interval = interval
    }

    /// Whether a line for `key` may be written at `now`: the number of lines suppressed for
    /// it since its last one, or nil when this one is to be suppressed (it is counted).
    public mutating func admit(_ key: Key, at now: Instant) -> Int? {
        if let entry = keys[key], now < entry.last.advanced(by: interval) {
            keys[key]?.suppressed += 1
            return nil
        }
        defer { keys[key] = (now, 0) }
        return keys[key]?.suppressed ?? 0
    }

    /// The keys with suppressed lines whose interval is over, with their counts; each is
    /// then treated as if a line had been written at `now`. Quiet keys are forgotten.
    public mutating func due(at now: Instant) -> [(key: Key, suppressed: Int)] {
        var due: [(key: Key, suppressed: Int)] = []
        for (key, entry) in keys where entry.last.advanced(by: interval) <= now {
            if entry.suppressed > 0 {
                due.append((key, entry.suppressed))
                keys[key] = (now, 0)
            } else {
                keys[key] = nil
            }
        }
        return due
    }
}
