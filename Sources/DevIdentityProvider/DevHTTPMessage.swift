import FoundationEssentials
import Glibc
import NIOHTTP1

/// One complete HTTP request as the dev servers see it.
struct DevHTTPRequest: Sendable {
    var method: HTTPMethod
    /// The path without the query, e.g. `/tenant/oauth2/v2.0/token`.
    var path: String
    var headers: HTTPHeaders
    var body: [UInt8]

    init(method: HTTPMethod, uri: String, headers: HTTPHeaders, body: [UInt8]) {
        self.method = method
        self.path = String(uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        self.headers = headers
        self.body = body
    }
}

/// One complete HTTP response.
struct DevHTTPResponse: Sendable {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: [UInt8]

    init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON answer with Entra's content type and no-store caching.
    static func json(_ value: some Encodable, status: HTTPResponseStatus = .ok) -> DevHTTPResponse {
        let body = (try? jsonEncoder.encode(value)).map { [UInt8]($0) } ?? Array("{}".utf8)
        return DevHTTPResponse(
            status: status,
            headers: ["Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store, no-cache"],
            body: body)
    }

    /// A plain-text answer (used for 404s and for faults that must not be JSON).
    static func text(_ text: String, status: HTTPResponseStatus) -> DevHTTPResponse {
        DevHTTPResponse(status: status, headers: ["Content-Type": "text/plain; charset=utf-8"], body: Array(text.utf8))
    }

    static func notFound(_ request: DevHTTPRequest) -> DevHTTPResponse {
        .text("no route for \(request.method) \(request.path)\n", status: .notFound)
    }

    static func badRequest(_ message: String) -> DevHTTPResponse {
        .json(["error": message], status: .badRequest)
    }

    /// Keys sorted so bodies are stable for diffs and golden files; slashes left alone for readability.
    static let jsonEncoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}

/// What a dev server does with a request.
typealias DevHTTPResponder = @Sendable (DevHTTPRequest) async -> DevHTTPResponse
