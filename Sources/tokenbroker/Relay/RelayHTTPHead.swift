import PlainJSON

// Hand-written: the CLI has no HTTP library (it depends on TokenBrokerProtocol and the
// standard library only, so the sidecar binary stays small), and the relay needs
// only GET heads from SDKs on loopback. The daemon's parser (BrokerServer's
// `HTTPHeadParser`) lives in a module that pulls in SwiftNIO; the rules here are its
// rules, cut down to what a relay needs.

/// One HTTP/1.x request head, as the relay reads it.
struct RelayHTTPRequest {
    var method: String
    var path: String
    var query: [(name: String, value: String)]
    var headers: [(name: String, value: String)]
    /// Whether the connection stays open after the answer (HTTP/1.1 without `Connection: close`).
    var keepAlive: Bool

    /// The values of parameter `name`, in order.
    func queryValues(_ name: String) -> [String] {
        query.filter { $0.name == name }.map(\.value)
    }

    /// The values of header `name` (case-insensitive), in order.
    func headerValues(_ name: String) -> [String] {
        let name = name.lowercased()
        return headers.filter { $0.name.lowercased() == name }.map(\.value)
    }
}

/// What `RelayHTTPHead.parse` made of the bytes read so far.
enum RelayHeadParse {
    /// No complete head yet: read more (up to the limit).
    case incomplete
    /// A head, and how many bytes of the buffer it took.
    case request(RelayHTTPRequest, consumed: Int)
    /// A head that cannot be read unambiguously: answer `status` and close.
    case invalid(status: Int, message: String)
}

/// Reads request heads: strict where two parsers could disagree (the daemon's rules).
enum RelayHTTPHead {
    /// The longest head accepted, 16 KiB (an SDK's is a few hundred bytes).
    static let maxHeadBytes = 16 * 1024

    static func parse(_ buffer: [UInt8]) -> RelayHeadParse {
        // Up to 8 empty lines before a request line are tolerated (RFC 9112 §2.2).
        var start = 0
        var skipped = 0
        while start < buffer.count, buffer[start] == UInt8(ascii: "\r") || buffer[start] == UInt8(ascii: "\n") {
            if buffer[start] == UInt8(ascii: "\n") { skipped += 1 }
            guard skipped <= 8 else { return .invalid(status: 400, message: "too many empty lines before the request line") }
            start += 1
        }
        guard let end = headEnd(buffer, from: start) else {
            return buffer.count > maxHeadBytes ? .invalid(status: 431, message: "the request head is larger than 16 KiB") : .incomplete
        }
        guard end <= maxHeadBytes else { return .invalid(status: 431, message: "the request head is larger than 16 KiB") }
        var lines = buffer[start..<end].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line in
            line.last == UInt8(ascii: "\r") ? line.dropLast() : line
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let requestLine = lines.first else { return .invalid(status: 400, message: "empty request") }
        let parts = requestLine.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, let method = String(validating: parts[0], as: UTF8.self), let target = String(validating: parts[1], as: UTF8.self),
            let version = String(validating: parts[2], as: UTF8.self)
        else { return .invalid(status: 400, message: "malformed request line") }
        guard (1...32).contains(method.utf8.count), method.utf8.allSatisfy({ (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) }) else {
            return .invalid(status: 400, message: "malformed method")
        }
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else {
            return .invalid(status: 400, message: "only HTTP/1.0 and HTTP/1.1 are spoken here")
        }
        guard let (path, query) = RelayRequestTarget.parse(target) else {
            return .invalid(status: 400, message: "the request target must be a path (origin form); this endpoint is not a proxy")
        }
        let headers: [(name: String, value: String)]
        switch Self.headers(lines.dropFirst()) {
        case .success(let read): headers = read
        case .failure(let problem): return .invalid(status: 400, message: problem.message)
        }
        var request = RelayHTTPRequest(method: method, path: path, query: query, headers: headers, keepAlive: false)
        guard request.headerValues("Transfer-Encoding").isEmpty else { return .invalid(status: 400, message: "Transfer-Encoding is not accepted") }
        // No route takes a body; one announced is refused rather than skipped.
        for length in request.headerValues("Content-Length") where length != "0" {
            return .invalid(status: 400, message: "no route takes a request body")
        }
        let connection = request.headerValues("Connection").flatMap { $0.lowercased().split(separator: ",").map { $0.trimmed() } }
        request.keepAlive = version == "HTTP/1.1" && !connection.contains("close")
        return .request(request, consumed: end)
    }

    private struct HeadProblem: Error {
        var message: String
    }

    /// The header lines as names and values (names as sent, values without surrounding blanks).
    private static func headers(_ lines: ArraySlice<ArraySlice<UInt8>>) -> Result<[(name: String, value: String)], HeadProblem> {
        var headers: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else {
                return .failure(HeadProblem(message: "malformed header line"))
            }
            let name = line[..<colon]
            // Whitespace before the colon or at the start (a folded line) is refused: parsers disagree on it.
            guard name.allSatisfy(isTokenByte) else { return .failure(HeadProblem(message: "malformed header name")) }
            var value = line[(colon + 1)...]
            while let first = value.first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") { value = value.dropFirst() }
            while let last = value.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { value = value.dropLast() }
            guard value.allSatisfy({ $0 >= 0x20 && $0 != 0x7F || $0 == UInt8(ascii: "\t") }), let text = String(validating: value, as: UTF8.self)
            else {
                return .failure(HeadProblem(message: "control character in a header value"))
            }
            headers.append((String(decoding: name, as: UTF8.self), text))
        }
        return .success(headers)
    }

    /// The index just past the empty line that ends the head, if the buffer has one.
    private static func headEnd(_ buffer: [UInt8], from start: Int) -> Int? {
        var index = start
        while let newline = buffer[index...].firstIndex(of: UInt8(ascii: "\n")) {
            let next = newline + 1
            if next < buffer.count, buffer[next] == UInt8(ascii: "\n") { return next + 1 }
            if next + 1 < buffer.count, buffer[next] == UInt8(ascii: "\r"), buffer[next + 1] == UInt8(ascii: "\n") { return next + 2 }
            if next >= buffer.count { return nil }
            index = next
        }
        return nil
    }

    /// RFC 9110 `tchar`.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        default: "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

/// One answer of the relay: a JSON body, its status and extra headers.
struct RelayHTTPResponse {
    var status: Int
    var body: String
    var headers: [(name: String, value: String)] = []

    /// The bytes on the wire; `close` adds `Connection: close`, `head` leaves out the body.
    func serialized(close: Bool) -> [UInt8] {
        var text = "HTTP/1.1 \(status) \(Self.reason(status))\r\nContent-Type: application/json; charset=utf-8\r\n"
        text += "Content-Length: \(body.utf8.count)\r\nCache-Control: no-store\r\n"
        for header in headers { text += "\(header.name): \(header.value)\r\n" }
        if close { text += "Connection: close\r\n" }
        text += "\r\n" + body
        return Array(text.utf8)
    }

    private static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}
