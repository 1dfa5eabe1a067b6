import Foundation
import TestRandom
import Testing
import TokenExchange

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

@Suite struct RefreshTiming {
    let policy = RefreshPolicy()
    let issued = Fixtures.now

    func token(lifetime: TimeInterval, refreshIn: TimeInterval? = nil) -> AccessToken {
        AccessToken(
            value: "t", issuedAt: issued, expiresAt: issued.addingTimeInterval(lifetime), refreshAt: refreshIn.map { issued.addingTimeInterval($0) })
    }

    @Test(arguments: [(3600.0, nil), (86399.0, 43199.0), (3599.0, 600.0), (300.0, nil)] as [(TimeInterval, TimeInterval?)])
    func refreshesAtRefreshInElseHalfLifeWithinTenPercent(lifetime: TimeInterval, refreshIn: TimeInterval?) {
        let base = refreshIn ?? lifetime / 2
        var random = SeededRandom(seed: 42)
        var delays: [Double] = []
        for _ in 0..<500 {
            let delay = policy.refreshDelay(for: token(lifetime: lifetime, refreshIn: refreshIn), using: &random)
            #expect(delay >= base * 0.9 - 1e-9 && delay <= base * 1.1 + 1e-9)
            delays.append(delay)
        }
        // Jitter actually spreads the fleet: both sides of the base are used.
        #expect(delays.contains { $0 < base * 0.97 } && delays.contains { $0 > base * 1.03 })
    }

    @Test func sameSeedSameDelay() {
        var a = SeededRandom(seed: 7), b = SeededRandom(seed: 7)
        let t = token(lifetime: 3600)
        #expect(policy.refreshDelay(for: t, using: &a) == policy.refreshDelay(for: t, using: &b))
    }

    @Test func noJitterMeansExactlyTheBase() {
        var policy = RefreshPolicy()
        policy.jitterFraction = 0
        var random = SeededRandom(seed: 1)
        #expect(policy.refreshDelay(for: token(lifetime: 3600), using: &random) == 1800)
        #expect(policy.refreshDelay(for: token(lifetime: 86399, refreshIn: 43199), using: &random) == 43199)
    }

    @Test func expiredTokenRefreshesAtOnce() {
        var random = SeededRandom(seed: 3)
        let odd = AccessToken(value: "t", issuedAt: issued, expiresAt: issued.addingTimeInterval(-10))
        #expect(policy.refreshDelay(for: odd, using: &random) == 0)
    }
}

@Suite struct RetryBackoff {
    let policy = RefreshPolicy()

    static func cap(_ attempt: Int) -> Double { min(pow(2, Double(attempt - 1)), 300) }

    @Test(arguments: Array(1...40))
    func backoffStaysInTheUpperHalfOfAnExponentialCappedAt300s(attempt: Int) {
        var random = SeededRandom(seed: UInt64(attempt))
        for _ in 0..<50 {
            let wait = policy.backoff(attempt: attempt, retryAfter: nil, using: &random).seconds
            #expect(wait >= Self.cap(attempt) / 2 - 1e-9 && wait <= Self.cap(attempt) + 1e-9)
        }
    }

    @Test func backoffGrowsFromOneSecondToTheCap() {
        var waits: [Double] = []
        for attempt in 1...15 {
            var random = SeededRandom(seed: 99)  // same jitter fraction for each attempt
            waits.append(policy.backoff(attempt: attempt, retryAfter: nil, using: &random).seconds)
        }
        #expect(waits[0] <= 1 && waits[0] >= 0.5)
        #expect(zip(waits, waits.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(zip(waits.prefix(8), waits.dropFirst().prefix(8)).allSatisfy { abs($1 - 2 * $0) < 1e-6 })
        #expect(waits.last! <= 300 && waits.last! >= 150)
        #expect(waits[12] == waits[14])
    }

    @Test(arguments: [0, -3, Int.min + 1])
    func attemptBelowOneCountsAsTheFirst(attempt: Int) {
        var random = SeededRandom(seed: 5)
        let wait = policy.backoff(attempt: attempt, retryAfter: nil, using: &random).seconds
        #expect(wait >= 0.5 && wait <= 1)
    }

    @Test(arguments: [1, 3, 9, 30])
    func neverShorterThanRetryAfter(attempt: Int) {
        var random = SeededRandom(seed: 11)
        for retryAfter in [Duration.seconds(0), .milliseconds(200), .seconds(7), .seconds(400), .seconds(3600)] {
            let wait = policy.backoff(attempt: attempt, retryAfter: retryAfter, using: &random)
            #expect(wait >= retryAfter)
            #expect(wait.seconds <= max(Self.cap(attempt), retryAfter.seconds) + 1e-9)
        }
    }

    @Test func customBoundsAreHonoured() {
        var policy = RefreshPolicy()
        policy.minimumBackoff = .milliseconds(100)
        policy.maximumBackoff = .seconds(2)
        var random = SeededRandom(seed: 8)
        let first = policy.backoff(attempt: 1, retryAfter: nil, using: &random).seconds
        let late = policy.backoff(attempt: 25, retryAfter: nil, using: &random).seconds
        #expect(first >= 0.05 && first <= 0.1 + 1e-9)
        #expect(late >= 1 && late <= 2)
    }
}
