import Testing
import TokenExchange

@Suite struct LogThrottleBehaviour {
    /// Instants as whole seconds.
    struct Second: InstantProtocol {
        var value: Int64
        func advanced(by duration: Duration) -> Self { Self(value: value + duration.components.seconds) }
        func duration(to other: Self) -> Duration { .seconds(other.value - value) }
        static func < (lhs: Self, rhs: Self) -> Bool { lhs.value < rhs.value }
    }

    @Test func oneLinePerKeyPerIntervalCarryingTheCountHeldBack() {
        var throttle = LogThrottle<String, Second>(interval: .seconds(10))
        #expect(throttle.admit("a", at: Second(value: 0)) == 0)
        #expect(throttle.admit("a", at: Second(value: 1)) == nil)
        #expect(throttle.admit("a", at: Second(value: 9)) == nil)
        #expect(throttle.admit("b", at: Second(value: 9)) == 0)  // keys are independent
        #expect(throttle.admit("a", at: Second(value: 10)) == 2)
        #expect(throttle.admit("a", at: Second(value: 11)) == nil)
    }

    @Test func dueReportsHeldBackLinesOnceTheIntervalIsOverAndForgetsQuietKeys() {
        var throttle = LogThrottle<String, Second>(interval: .seconds(10))
        _ = throttle.admit("a", at: Second(value: 0))
        _ = throttle.admit("a", at: Second(value: 1))
        _ = throttle.admit("quiet", at: Second(value: 0))
        #expect(throttle.due(at: Second(value: 5)).isEmpty)
        let due = throttle.due(at: Second(value: 10))
        #expect(due.map(\.key) == ["a"] && due.map(\.suppressed) == [1])
        // The summary counts as a line: the next one within 10 s is held back again.
        #expect(throttle.admit("a", at: Second(value: 12)) == nil)
        #expect(throttle.admit("quiet", at: Second(value: 12)) == 0)
    }
}
