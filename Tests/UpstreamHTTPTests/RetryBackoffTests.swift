import TestRandom
import Testing

@testable import UpstreamHTTP

/// Backoff arithmetic: 200 ms × 2^n, within ±20 %.
@Suite struct RetryBackoffTests {
    @Test(arguments: [(0, 200), (1, 400), (2, 800)])
    func doublesWithJitter(retry: Int, nominalMilliseconds: Int) {
        let backoff = RetryBackoff(base: .milliseconds(200))
        var random = SeededRandom()
        for _ in 0..<50 {
            let delay = backoff.delay(beforeRetry: retry, using: &random)
            #expect(delay >= .milliseconds(nominalMilliseconds) * 0.8, "\(random)")
            #expect(delay <= .milliseconds(nominalMilliseconds) * 1.2, "\(random)")
        }
    }

    @Test func withoutJitterIsExact() {
        var random = SeededRandom()
        #expect(RetryBackoff(base: .milliseconds(200), jitter: 0).delay(beforeRetry: 2, using: &random) == .milliseconds(800), "\(random)")
    }
}
