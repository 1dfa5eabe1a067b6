public import FoundationEssentials
import Glibc
import PlainJSON
public import TokenExchange

/// Fetches an assertion with one HTTP GET through the broker's upstream transport:
/// GitHub Actions' OIDC token service, or the GCE/GKE metadata server.
public struct HTTPAssertionFetcher: Sendable {
    /// The request; built by `githubActions` or `gcpMetadata`.
    public let request: UpstreamRequest
    /// Where the assertion comes from, for messages (no query, no credentials).
    public let origin: String
    private let extract: @Sendable (UpstreamResponse) throws(TokenExchangeError) -> String
    private let transport: any HTTPTransport
    private let now: @Sendable () -> Date

    init(
        request: UpstreamRequest, origin: String, transport: any HTTPTransport, now: @escaping @Sendable () -> Date,
        extract: @escaping @Sendable (UpstreamResponse) throws(TokenExchangeError) -> String
    ) {
        self.request = request
        self.origin = origin
        self.transport = transport
        self.now = now
        self.extract = extract
    }

    /// GitHub Actions: `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=…` with
    /// `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answered `{"value": JWT}`.
    public static func githubActions(
        requestURL: String, requestToken: String, audience: String?, transport: any HTTPTransport, now: @escaping @Sendable () -> Date
    ) -> HTTPAssertionFetcher {
        var url = requestURL
        if let audience {
            url += (url.contains("?") ? "&" : "?") + FormEncoding.encode([("audience", audience)])
        }
        let request = UpstreamRequest(
            method: "GET", url: url,
            headers: [HeaderField("Authorization", "bearer \(requestToken)"), HeaderField("Accept", "application/json; api-version=2.0")], body: [])
        let origin = "github-actions:\(Self.withoutQuery(requestURL))"
        return HTTPAssertionFetcher(request: request, origin: origin, transport: transport, now: now) { response throws(TokenExchangeError) in
            let body = try Self.successBody(response, origin: origin)
            guard let value = (try? JSONDecoder().decode(ValueDocument.self, from: Data(body)))?.value else {
                throw .assertionUnavailable(origin: origin, reason: "the answer is not JSON with a string 'value'")
            }
            return value
        }
    }

    /// GCE/GKE metadata server: `GET {base}/computeMetadata/v1/instance/service-accounts/default/identity?audience=…&format=full`
    /// with `Metadata-Flavor: Google`, answered with the JWT as text.
    public static func gcpMetadata(
        baseURL: String, audience: String, transport: any HTTPTransport, now: @escaping @Sendable () -> Date
    ) -> HTTPAssertionFetcher {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        let url =
            "\(base)/computeMetadata/v1/instance/service-accounts/default/identity?\(FormEncoding.encode([("audience", audience), ("format", "full")]))"
        let request = UpstreamRequest(method: "GET", url: url, headers: [HeaderField("Metadata-Flavor", "Google")], body: [])
        let origin = "gcp-metadata:\(base)"
        return HTTPAssertionFetcher(request: request, origin: origin, transport: transport, now: now) { response throws(TokenExchangeError) in
            String(decoding: try Self.successBody(response, origin: origin), as: UTF8.self).trimmed()
        }
    }

    /// Fetches and decodes one assertion.
    public func fetch() async throws(TokenExchangeError) -> Assertion {
        let response: UpstreamResponse
        do {
            response = try await transport.send(request)
        } catch {
            throw .assertionUnavailable(origin: origin, reason: error.message)
        }
        let jwt = try extract(response)
        do {
            return try Assertion(jwt: jwt, origin: origin, loadedAt: now())
        } catch {
            throw .assertionUnavailable(origin: origin, reason: "the answer is not a JWT (\(error.reason))")
        }
    }

    private static func successBody(_ response: UpstreamResponse, origin: String) throws(TokenExchangeError) -> [UInt8] {
        guard response.status == 200 else {
            throw TokenExchangeError(
                code: .assertionUnavailable, message: "\(origin) answered HTTP \(response.status)",
                isRetryable: response.status >= 500 || response.status == 429)
        }
        return response.body
    }

    private static func withoutQuery(_ url: String) -> String {
        String(url.prefix { $0 != "?" })
    }
}

/// GitHub's `{"value": "<JWT>"}`: `value` nil when absent or not a string, and no document at
/// all when the body is not well-formed JSON (as `JSONSerialization` refused it).
private struct ValueDocument: Decodable {
    var value: String?

    private enum Key: CodingKey { case value }

    init(from decoder: any Decoder) throws {
        _ = try WellFormedJSON(from: decoder)
        value = try decoder.container(keyedBy: Key.self).lenient(.value)
    }
}
