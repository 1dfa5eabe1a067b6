import AsyncHTTPClient
import FoundationEssentials
import Glibc
public import Logging
public import NIOCore
import NIOHTTP1
import NIOSSL
import PlainJSON
public import TokenExchange

/// The production `HTTPTransport`: HTTPS to token services over AsyncHTTPClient, with
/// system trust roots plus configured CA bundles, timeouts, bounded responses and
/// retries of transient failures.
///
/// Never logs or reports request bodies: they carry assertions. Call `shutdown()`
/// before releasing it.
public final class AsyncHTTPTransport: HTTPTransport {
    /// The settings it was created with.
    public let configuration: UpstreamHTTPConfiguration
    private let client: HTTPClient
    private let logger: Logger
    private let backoff: RetryBackoff

    /// Creates a transport, loading every CA bundle now.
    ///
    /// - Parameters:
    ///   - configuration: Timeouts, retries, limits and trust (see `UpstreamHTTPConfiguration`).
    ///   - logger: Receives one debug line per attempt (method, host, path, status, duration).
    ///   - eventLoopGroup: The NIO group to run on; nil uses AsyncHTTPClient's shared group.
    /// - Throws: `UpstreamHTTPError` naming the CA file or field that is wrong.
    public init(
        configuration: UpstreamHTTPConfiguration = UpstreamHTTPConfiguration(),
        logger: Logger,
        eventLoopGroup: (any EventLoopGroup)? = nil
    ) throws(UpstreamHTTPError) {
        try configuration.validate()
        var tls = TLSConfiguration.makeClientConfiguration()  // system roots, full verification
        let extraRoots = try TrustRoots.load(configuration.additionalCAFiles)
        if !configuration.trustSystemRoots {
            tls.trustRoots = .certificates(extraRoots)
        } else if !extraRoots.isEmpty {
            // Appending keeps the system roots; assigning trustRoots would replace them.
            tls.additionalTrustRoots.append(.certificates(extraRoots))
        }
        var clientConfiguration = HTTPClient.Configuration(
            tlsConfiguration: tls,
            // A token endpoint never legitimately redirects, and following one would resend
            // the assertion to wherever the Location points: return 3xx as an answer instead.
            redirectConfiguration: .disallow,
            timeout: HTTPClient.Configuration.Timeout(connect: TimeAmount(configuration.connectTimeout)),
            decompression: .disabled
        )
        // Otherwise AHC retries a failed connection (refused, TLS verification) until the connect
        // timeout; our own retry loop does that with backoff, and a bad certificate fails in ms.
        clientConfiguration.connectionPool.retryConnectionEstablishment = false
        self.client = HTTPClient(
            eventLoopGroup: eventLoopGroup ?? HTTPClient.defaultEventLoopGroup,
            configuration: clientConfiguration,
            backgroundActivityLogger: logger
        )
        self.configuration = configuration
        self.logger = logger
        self.backoff = RetryBackoff(base: configuration.retryBaseDelay)
    }

    /// Closes every connection; the transport cannot send afterwards.
    public func shutdown() async throws {
        try await client.shutdown()
    }

    /// Sends `request`, retrying transport failures and 5xx; any final HTTP status is returned.
    public func send(_ request: UpstreamRequest) async throws(TokenExchangeError) -> UpstreamResponse {
        let target = try UpstreamTarget(url: request.url, allowInsecureLoopback: configuration.allowInsecureHTTPForLoopback)
        var random = SystemRandomNumberGenerator()
        var retry = 0
        while true {
            let delay: Duration
            switch await attempt(request, to: target, number: retry + 1) {
            case .success(let response):
                guard (500...599).contains(response.status), retry < configuration.retries else { return response }
                let retryAfter = Self.retryAfter(response)
                if let retryAfter, retryAfter > configuration.maximumRetryAfter { return response }
                delay = max(retryAfter ?? .zero, backoff.delay(beforeRetry: retry, using: &random))
            case .failure(let failure):
                guard failure.isRetryable, retry < configuration.retries else { throw failure.error }
                delay = backoff.delay(beforeRetry: retry, using: &random)
            }
            do {
                try await Task.sleep(for: delay)
            } catch {
                throw .transport("request to \(target.hostAndPort) cancelled")
            }
            retry += 1
        }
    }

    /// One try; failures come back classified, never thrown.
    private func attempt(_ request: UpstreamRequest, to target: UpstreamTarget, number: Int) async -> Result<UpstreamResponse, AttemptFailure> {
        var httpRequest = HTTPClientRequest(url: request.url)
        httpRequest.method = HTTPMethod(rawValue: request.method)
        for field in request.headers {
            httpRequest.headers.add(name: field.name, value: field.value)
        }
        if !httpRequest.headers.contains(name: "User-Agent") {
            httpRequest.headers.add(name: "User-Agent", value: configuration.userAgent)
        }
        if !request.body.isEmpty {
            httpRequest.body = .bytes(ByteBuffer(bytes: request.body))
        }

        let started = ContinuousClock.now
        let result: Result<UpstreamResponse, AttemptFailure>
        do {
            let response = try await client.execute(httpRequest, timeout: TimeAmount(configuration.requestTimeout))
            result = try await .success(read(response, from: target))
        } catch let failure as AttemptFailure {
            result = .failure(failure)
        } catch {
            result = .failure(AttemptFailure.classify(error, target: target, configuration: configuration))
        }

        var metadata: Logger.Metadata = [
            "http.method": "\(request.method)",
            "http.host": "\(target.hostAndPort)",
            "http.path": "\(target.path)",
            "http.attempt": "\(number)",
            "http.duration_ms": "\((ContinuousClock.now - started) / .milliseconds(1))",
        ]
        switch result {
        case .success(let response): metadata["http.status"] = "\(response.status)"
        case .failure(let failure): metadata["error.message"] = "\(failure.error.message)"
        }
        logger.debug("upstream request", metadata: metadata)
        return result
    }

    /// Collects the body within `maxResponseBytes`, refusing early on a large Content-Length.
    private func read(_ response: HTTPClientResponse, from target: UpstreamTarget) async throws -> UpstreamResponse {
        let limit = configuration.maxResponseBytes
        if let declared = response.headers.first(name: "Content-Length").flatMap(Int.init), declared > limit {
            throw AttemptFailure.oversized(limit: limit, target: target)
        }
        let body: ByteBuffer
        do {
            body = try await response.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw AttemptFailure.oversized(limit: limit, target: target)
        }
        return UpstreamResponse(
            status: Int(response.status.code),
            headers: response.headers.map { HeaderField($0.name, $0.value) },
            body: Array(body.readableBytesView)
        )
    }

    /// `Retry-After` in integer seconds (the form token services use); HTTP dates are ignored.
    private static func retryAfter(_ response: UpstreamResponse) -> Duration? {
        guard let value = response.header("Retry-After"), let seconds = Int(value.trimmed()),
            seconds >= 0
        else { return nil }
        return .seconds(seconds)
    }
}
