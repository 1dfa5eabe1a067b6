/// Exponential backoff with jitter for retries of one request. Pure: the random source
/// is a parameter so tests can pin it.
struct RetryBackoff: Sendable {
    /// The delay before the first retry.
    var base: Duration
    /// Jitter as a fraction of the delay, either way (0.2 = ±20 %), so that brokers that
    /// failed together do not retry together.
    var jitter: Double = 0.2

    /// The delay before retry number `retry` (0 for the first): `base × 2^retry` ± jitter.
    func delay(beforeRetry retry: Int, using random: inout some RandomNumberGenerator) -> Duration {
        let nominal = base * (1 << min(retry, 16))
        guard jitter > 0 else { return nominal }
        return nominal * Double.random(in: (1 - jitter)...(1 + jitter), using: &random)
    }
}
