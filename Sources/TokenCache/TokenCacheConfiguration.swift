import Metrics
public import TokenExchange

/// How the cache keeps tokens.
public struct TokenCacheConfiguration: Sendable {
    /// Most scopes cached per identity; the least recently requested is evicted
    /// beyond it, so a caller inventing scopes cannot grow memory (default 64).
    public var maxScopesPerIdentity: Int = 64
    /// A cached token is refreshed ahead of expiry only if some caller asked for
    /// its scope within this window (default 1 h).
    public var activeWindow: Duration = .seconds(3600)
    /// Validity a cached token must still have to be served when the request does
    /// not say (default 300 s, as the Azure SDKs use).
    public var defaultMinimumValidity: Duration = .seconds(300)
    /// A caller asking for more validity than the cached token has triggers a refresh
    /// at most this often per key; in between, the still-valid token is served
    /// (default 30 s, as MSAL does). Without it, a caller asking for a day of
    /// validity would send every request upstream.
    public var minimumRefreshInterval: Duration = .seconds(30)
    /// Exchanges of one identity in flight at once; more wait in order (default 8, the
    /// HTTP client's connections per host).
    public var maxConcurrentExchangesPerIdentity: Int = 8
    /// How often the refresher looks for due refreshes (default 1 s).
    public var refreshTick: Duration = .seconds(1)
    /// How long exchanges already in flight may still finish once shutdown begins
    /// (`beginShutdown()`), default 1.5 s: enough for a token service that answers, so a
    /// restart loses no request; a hung one is abandoned after it.
    public var shutdownGrace: Duration = .milliseconds(1500)
    /// Refresh timing and backoff.
    public var refreshPolicy = RefreshPolicy()

    /// The defaults.
    public init() {}
}

/// The (identity, scope) pair that names one cached token.
public struct TokenKey: Hashable, Sendable, CustomStringConvertible {
    /// Identity name.
    public var identity: String
    /// Scope.
    public var scope: Scope

    /// Creates a key.
    public init(identity: String, scope: Scope) {
        self.identity = identity
        self.scope = scope
    }

    public var description: String { "\(identity) \(scope)" }
}

/// A token as served from the cache.
public struct CachedToken: Sendable {
    /// The token.
    public var token: AccessToken
    /// Time left, measured on the cache's monotonic clock.
    public var expiresIn: Duration
    /// Which key it was cached under.
    public var key: TokenKey
    /// The identity's hit counter, when this came from `cachedToken`.
    var hits: Counter?

    /// Counts `answers` more cache hits for this token, served again without a lookup (a
    /// connection repeating an answer it just gave).
    public func countRepeatedHit(_ answers: Int = 1) {
        hits?.increment(by: answers)
    }
}

/// One cached scope, for status and metrics.
public struct CacheEntrySnapshot: Sendable {
    /// The scope.
    public var scope: Scope
    /// Time left on the cached token, nil when there is none.
    public var expiresIn: Duration?
    /// The last failure, when the last exchange for this scope failed.
    public var lastError: TokenExchangeError?
}
