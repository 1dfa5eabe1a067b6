import FoundationEssentials
import Glibc

/// When to refresh a token and how long to wait after a failure. Pure arithmetic:
/// randomness comes in as a generator so tests can pin it.
public struct RefreshPolicy: Sendable, Equatable {
    /// Refresh jitter as a fraction of the refresh delay (default 0.1, i.e. ±10 %),
    /// so that many brokers started together do not refresh together.
    public var jitterFraction: Double = 0.1
    /// First retry delay after a failed exchange (default 1 s).
    public var minimumBackoff: Duration = .seconds(1)
    /// Longest retry delay (default 5 min).
    public var maximumBackoff: Duration = .seconds(300)

    /// The default policy.
    public init() {}

    /// Seconds after issue at which to refresh `token`: Entra's `refresh_in` when
    /// given, else half the lifetime, each with ±`jitterFraction`.
    public func refreshDelay(for token: AccessToken, using random: inout some RandomNumberGenerator) -> Double {
        let base = token.refreshAt.map { $0.timeIntervalSince(token.issuedAt) } ?? token.lifetime / 2
        let jitter = jitterFraction > 0 ? Double.random(in: -jitterFraction...jitterFraction, using: &random) : 0
        return max(0, base * (1 + jitter))
    }

    /// The wait before retry number `attempt` (1-based): exponential from
    /// `minimumBackoff`, capped at `maximumBackoff`, with full jitter on the upper
    /// half; never shorter than the service's `Retry-After`.
    public func backoff(attempt: Int, retryAfter: Duration?, using random: inout some RandomNumberGenerator) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let cap = min(minimumBackoff * (1 << exponent), maximumBackoff)
        let capSeconds = Double(cap.components.seconds) + Double(cap.components.attoseconds) / 1e18
        let jittered = Duration.seconds(capSeconds * Double.random(in: 0.5...1.0, using: &random))
        guard let retryAfter else { return jittered }
        return max(jittered, retryAfter)
    }
}
