/// How `AsyncHTTPTransport` talks to token services. Every field has a production
/// default; the app overrides a few from its configuration file.
public struct UpstreamHTTPConfiguration: Sendable, Equatable {
    /// Time allowed to open a TCP connection (TLS handshake included). Default 5 s.
    public var connectTimeout: Duration
    /// Time allowed for one attempt, from sending to the last byte of the response. Default 15 s.
    ///
    /// Applies per attempt: with retries, a call may take up to
    /// `(retries + 1) × requestTimeout` plus backoff.
    public var requestTimeout: Duration
    /// Responses with a larger body are refused (a token response is a few KiB). Default 1 MiB.
    public var maxResponseBytes: Int
    /// How many times a transport failure or a 5xx is retried. Default 2 (three attempts).
    ///
    /// 4xx and 429 are never retried here: they are answers, and the cache decides when
    /// to ask again (a 429 storm from every broker retrying at once is what we avoid).
    public var retries: Int
    /// First backoff delay; attempt n waits `retryBaseDelay × 2^n`, ±20 % jitter. Default 200 ms.
    public var retryBaseDelay: Duration
    /// The longest `Retry-After` on a 5xx that is waited out before retrying; a longer one
    /// returns the response at once so the caller can schedule the retry. Default 2 s.
    public var maximumRetryAfter: Duration
    /// Sent as `User-Agent` unless the request sets its own. Default `tokenbroker/0.1`.
    public var userAgent: String
    /// PEM bundles whose certificates are trusted in addition to the system roots.
    /// Loaded when the transport is created; a missing or empty file fails then. Default none.
    public var additionalCAFiles: [String]
    /// Allows `http://` to loopback hosts (127.0.0.0/8, ::1, localhost), for local test
    /// servers only. Assertions never travel over plain text otherwise. Default false.
    public var allowInsecureHTTPForLoopback: Bool
    /// Trusts the system roots (and `SSL_CERT_FILE`) besides `additionalCAFiles`. Default
    /// true; false trusts `additionalCAFiles` alone: dev mode, whose only token service is
    /// its own, so that no start parses the system bundle (~150 certificates, 4–5 ms).
    public var trustSystemRoots: Bool = true

    /// Creates a configuration; every parameter defaults to the documented production value.
    public init(
        connectTimeout: Duration = .seconds(5),
        requestTimeout: Duration = .seconds(15),
        maxResponseBytes: Int = 1024 * 1024,
        retries: Int = 2,
        retryBaseDelay: Duration = .milliseconds(200),
        maximumRetryAfter: Duration = .seconds(2),
        userAgent: String = "tokenbroker/0.1",
        additionalCAFiles: [String] = [],
        allowInsecureHTTPForLoopback: Bool = false
    ) {
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
        self.maxResponseBytes = maxResponseBytes
        self.retries = retries
        self.retryBaseDelay = retryBaseDelay
        self.maximumRetryAfter = maximumRetryAfter
        self.userAgent = userAgent
        self.additionalCAFiles = additionalCAFiles
        self.allowInsecureHTTPForLoopback = allowInsecureHTTPForLoopback
    }

    /// `base` plus the trust settings the process was started with.
    ///
    /// NIOSSL reads only the fixed system trust store and ignores `SSL_CERT_FILE`, so the
    /// app passes its environment in and the bundle named there is added explicitly (this
    /// module never reads the environment itself). `caFile` is the configuration file's
    /// CA bundle. Empty values are ignored; duplicates are loaded once.
    public static func configuration(
        environment: [String: String],
        caFile: String?,
        base: UpstreamHTTPConfiguration = UpstreamHTTPConfiguration()
    ) -> UpstreamHTTPConfiguration {
        var configuration = base
        // SSL_CERT_FILE extends the system's trust; without the system roots it does not apply.
        for file in [base.trustSystemRoots ? environment["SSL_CERT_FILE"] : nil, caFile] {
            guard let file, !file.isEmpty, !configuration.additionalCAFiles.contains(file) else { continue }
            configuration.additionalCAFiles.append(file)
        }
        return configuration
    }

    /// Checks the values that cannot be typed precisely; throws naming the field.
    func validate() throws(UpstreamHTTPError) {
        func fail(_ message: String) -> UpstreamHTTPError { UpstreamHTTPError(code: .invalidConfiguration, message: message) }
        guard connectTimeout > .zero else { throw fail("connectTimeout must be positive") }
        guard requestTimeout > .zero else { throw fail("requestTimeout must be positive") }
        guard maxResponseBytes > 0 else { throw fail("maxResponseBytes must be positive") }
        guard (0...10).contains(retries) else { throw fail("retries must be between 0 and 10, got \(retries)") }
        guard retryBaseDelay >= .zero else { throw fail("retryBaseDelay must not be negative") }
        guard maximumRetryAfter >= .zero else { throw fail("maximumRetryAfter must not be negative") }
        guard !userAgent.isEmpty, !userAgent.contains(where: \.isNewline) else {
            throw fail("userAgent must be a non-empty single line")
        }
    }
}
