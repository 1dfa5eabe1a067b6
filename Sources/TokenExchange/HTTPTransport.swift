/// A request to a token service, described as data: the core builds it, a
/// transport sends it.
public struct UpstreamRequest: Sendable, Equatable {
    /// `POST` for every token endpoint we speak.
    public var method: String
    /// The absolute `https://` URL.
    public var url: String
    /// Header name/value pairs in order.
    public var headers: [HeaderField]
    /// The body bytes (a form for OAuth endpoints).
    public var body: [UInt8]

    /// Creates a request.
    public init(method: String, url: String, headers: [HeaderField], body: [UInt8]) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// What a token service answered.
public struct UpstreamResponse: Sendable, Equatable {
    /// HTTP status code.
    public var status: Int
    /// Header name/value pairs in order.
    public var headers: [HeaderField]
    /// The body bytes.
    public var body: [UInt8]

    /// Creates a response.
    public init(status: Int, headers: [HeaderField] = [], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of header `name`, compared case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// One HTTP header.
public struct HeaderField: Sendable, Equatable {
    /// Header name.
    public var name: String
    /// Header value.
    public var value: String

    /// Creates a header field.
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// Sends one request to a token service and returns its answer.
///
/// Contract: any HTTP status is a response, not an error; only a failure to get
/// a response at all (connect, TLS, timeout) throws, as a `TokenExchangeError`
/// with code `upstream_unavailable`.
public protocol HTTPTransport: Sendable {
    /// Sends `request` and returns the response.
    func send(_ request: UpstreamRequest) async throws(TokenExchangeError) -> UpstreamResponse
}
