/// Answers plain HTTP requests on a listener that speaks someone else's protocol
/// (the Azure App Service and IMDS compatibility endpoints). The server parses
/// HTTP/1.1 and enforces its limits; the service decides everything else.
public protocol HTTPService: Sendable {
    /// Answers one request from `peer` (for loopback TCP, a uid from `/proc/net/tcp`
    /// or `PeerCredentials.unknown`).
    func respond(to request: HTTPServiceRequest, from peer: PeerCredentials) async -> HTTPServiceResponse
}

/// One request as an `HTTPService` sees it.
public struct HTTPServiceRequest: Sendable {
    /// `GET`, `POST`, …
    public var method: String
    /// The path, percent-decoded, without the query.
    public var path: String
    /// Query parameters in order, percent-decoded.
    public var query: [(name: String, value: String)]
    /// Header fields in order.
    public var headers: [(name: String, value: String)]
    /// The request target as sent: `/path?query` (origin form), or `http://host/path`
    /// (absolute form, what a client sends to a proxy).
    public var target: String
    /// The target has a `%` not followed by two hexadecimal digits (kept as sent in `query`).
    public var malformedEscape = false

    /// Creates a request; `target` defaults to `path` (origin form).
    public init(
        method: String, path: String, query: [(name: String, value: String)] = [], headers: [(name: String, value: String)] = [],
        target: String? = nil
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.target = target ?? path
    }

    /// The values of query parameter `name`, in order.
    public func queryValues(_ name: String) -> [String] {
        query.filter { $0.name == name }.map(\.value)
    }

    /// The values of header `name` (case-insensitive), in order.
    public func headerValues(_ name: String) -> [String] {
        headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }
}

/// One answer from an `HTTPService`.
public struct HTTPServiceResponse: Sendable {
    /// The status code.
    public var status: Int
    /// The body.
    public var body: String
    /// `Content-Type` (default `application/json`).
    public var contentType: String
    /// More header fields (`Retry-After`, `WWW-Authenticate`, …).
    public var headers: [(name: String, value: String)]

    /// Creates a response.
    public init(status: Int, body: String, contentType: String = "application/json", headers: [(name: String, value: String)] = []) {
        self.status = status
        self.body = body
        self.contentType = contentType
        self.headers = headers
    }
}
