// Hand-written: against NIOHTTP1's llhttp, HTTP at 32 connections went 12.2 → 8.6 µs CPU/req (docs/benchmarks.md).
import Glibc

/// One HTTP/1.x request head.
///
/// A class, filled in by the parser and not changed after: a remembered head is handed out
/// for every repeat of it, and a struct of three strings and an array would be copied
/// (retained and released field by field) each time.
final class HTTPHead {
    /// `GET`, `HEAD`, … (case-sensitive, as RFC 9110 says).
    let method: String
    /// The request target as sent (`/v1/token?scope=…`).
    let target: String
    /// 0 or 1: HTTP/1.0 or HTTP/1.1.
    let minorVersion: Int
    /// Header fields in order; empty unless asked for.
    fileprivate(set) var headers: [(name: String, value: String)] = []
    /// Whether the connection stays open after the answer.
    fileprivate(set) var keepAlive: Bool
    /// The length of a body that follows the head (no route takes one: it is skipped).
    fileprivate(set) var bodyLength = 0

    init(method: String, target: String, minorVersion: Int, keepAlive: Bool) {
        self.method = method
        self.target = target
        self.minorVersion = minorVersion
        self.keepAlive = keepAlive
    }
}

/// A head and how many bytes it took. A struct rather than a tuple: an optional tuple of a
/// non-trivial struct is copied and destroyed through the runtime's generic tuple witnesses
/// (~400 instructions per repeated request on the HTTP path, eleventh round).
struct ParsedHead {
    var head: HTTPHead
    var length: Int
}

/// Why a request head was refused; the connection closes after the answer.
enum HTTPHeadError: Error, Equatable {
    /// 400, with what was wrong.
    case malformed(String)
    /// 413: the head, or a body, is larger than allowed.
    case tooLarge
    /// 431: more header fields than allowed.
    case tooManyFields(Int)
}

/// Reads request heads (RFC 9112) straight from the connection's bytes, for routes that
/// take no body: one pass over the head, without a callback or a string per element.
///
/// Strict where leniency lets two parsers disagree about where a request ends: no
/// whitespace before a field's colon, no folded lines, one `Content-Length` (digits
/// only), no `Transfer-Encoding`. Lenient where that is harmless and common: empty
/// lines before a request line, and a bare LF as line end.
enum HTTPHeadParser {
    /// The head at the start of `bytes` and the bytes it took, or nil when it is not
    /// complete yet. Throws when the bytes cannot be (the start of) a request head.
    static func parse(
        _ bytes: UnsafeRawBufferPointer, maxHeadBytes: Int, maxFields: Int = 256, collectHeaders: Bool
    ) throws(HTTPHeadError) -> ParsedHead? {
        var lines = Lines(bytes: bytes, limit: maxHeadBytes)
        var requestLine: Range<Int>?
        // A client may send an empty line before a request (after a body, say): a few are
        // ignored, more are refused (each one would make the head be read again).
        var emptyLines = 0
        while requestLine == nil {
            guard let line = try lines.next() else {
                // Refuse at once what cannot become a request line (a TLS handshake, binary
                // garbage), rather than wait for a line end that may never come.
                try checkMethodStart(bytes, from: lines.position)
                return nil
            }
            if !line.isEmpty {
                requestLine = line
            } else {
                emptyLines += 1
                guard emptyLines <= maxEmptyLinesBeforeRequest else {
                    throw .malformed("more than \(maxEmptyLinesBeforeRequest) empty lines before the request line")
                }
            }
        }
        let head = try parseRequestLine(bytes, requestLine!)
        var contentLength: Int?
        var fields = 0
        // `close` in any Connection field wins (RFC 9112 §9.6); `keep-alive` matters for 1.0.
        var close = false, keepAlive = false
        while true {
            guard let line = try lines.next() else { return nil }
            if line.isEmpty { break }
            fields += 1
            guard fields <= maxFields else { throw .tooManyFields(maxFields) }
            let (name, value) = try splitField(bytes, line)
            if equalsIgnoringCase(bytes, name, "content-length") {
                guard value.count <= 18, !value.isEmpty, bytes[value].allSatisfy({ (0x30...0x39).contains($0) }) else {
                    throw .malformed("Content-Length is not a number")
                }
                let length = bytes[value].reduce(0) { $0 * 10 + Int($1 - 0x30) }
                guard contentLength == nil || contentLength == length else { throw .malformed("conflicting Content-Length fields") }
                contentLength = length
            } else if equalsIgnoringCase(bytes, name, "transfer-encoding") {
                throw .malformed("Transfer-Encoding is not supported: no route takes a request body")
            } else if equalsIgnoringCase(bytes, name, "connection") {
                for option in bytes[value].split(separator: UInt8(ascii: ",")) {
                    let token = option.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed()
                    if token.count == 5, equalsIgnoringCase(Array(token), "close") { close = true }
                    if token.count == 10, equalsIgnoringCase(Array(token), "keep-alive") { keepAlive = true }
                }
            }
            if collectHeaders {
                head.headers.append((String(decoding: bytes[name], as: UTF8.self), String(decoding: bytes[value], as: UTF8.self)))
            }
        }
        head.keepAlive = !close && (head.minorVersion == 1 || keepAlive)
        head.bodyLength = contentLength ?? 0
        return ParsedHead(head: head, length: lines.position)
    }

    static let maxEmptyLinesBeforeRequest = 8
    /// Longer than any method there is.
    static let maxMethodBytes = 32

    /// For a request line not ended yet, starting at `start`: whether its beginning can still
    /// be a method. Looks at no more than `maxMethodBytes + 1` bytes, so that it can be
    /// asked after every read.
    static func checkMethodStart(_ bytes: UnsafeRawBufferPointer, from start: Int) throws(HTTPHeadError) {
        // (A CR or LF may be the start of an empty line before the request: not judged here.)
        let method = bytes[start...].prefix(maxMethodBytes + 1).prefix { $0 != 0x20 && $0 != 0x0D && $0 != 0x0A }
        guard method.allSatisfy(isTokenByte) else { throw .malformed("the request does not start with a method") }
        guard method.count <= maxMethodBytes else { throw .malformed("the method is longer than \(maxMethodBytes) bytes") }
    }

    /// `METHOD SP request-target SP HTTP/1.x`
    private static func parseRequestLine(_ bytes: UnsafeRawBufferPointer, _ line: Range<Int>) throws(HTTPHeadError) -> HTTPHead {
        guard let firstSpace = bytes[line].firstIndex(of: 0x20) else { throw .malformed("the request line is not 'METHOD target HTTP/1.1'") }
        let method = line.lowerBound..<firstSpace
        guard let secondSpace = bytes[(firstSpace + 1)..<line.upperBound].firstIndex(of: 0x20) else {
            throw .malformed("the request line is not 'METHOD target HTTP/1.1'")
        }
        let target = (firstSpace + 1)..<secondSpace
        let version = (secondSpace + 1)..<line.upperBound
        guard !method.isEmpty, bytes[method].allSatisfy(isTokenByte) else { throw .malformed("the method is not a token") }
        guard method.count <= maxMethodBytes else { throw .malformed("the method is longer than \(maxMethodBytes) bytes") }
        guard !target.isEmpty, bytes[target].allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .malformed("the request target is empty or has spaces, control or non-ASCII characters")
        }
        let minor: Int
        if equals(bytes, version, "HTTP/1.1") {
            minor = 1
        } else if equals(bytes, version, "HTTP/1.0") {
            minor = 0
        } else {
            throw .malformed("only HTTP/1.0 and HTTP/1.1 are spoken here")
        }
        return HTTPHead(
            method: String(decoding: bytes[method], as: UTF8.self), target: String(decoding: bytes[target], as: UTF8.self),
            minorVersion: minor, keepAlive: minor == 1)
    }

    /// `name ":" OWS value OWS`, as the ranges of name and value.
    private static func splitField(_ bytes: UnsafeRawBufferPointer, _ line: Range<Int>) throws(HTTPHeadError) -> (Range<Int>, Range<Int>) {
        guard bytes[line.lowerBound] != 0x20, bytes[line.lowerBound] != 0x09 else { throw .malformed("folded header lines are not accepted") }
        guard let colon = bytes[line].firstIndex(of: UInt8(ascii: ":")), colon > line.lowerBound,
            bytes[line.lowerBound..<colon].allSatisfy(isTokenByte)
        else { throw .malformed("a header line is not 'Name: value'") }
        var start = colon + 1, end = line.upperBound
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
        while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
        // Field values: visible characters, spaces, tabs and (obsolete) bytes ≥ 0x80.
        guard bytes[start..<end].allSatisfy({ $0 >= 0x20 && $0 != 0x7F || $0 == 0x09 }) else {
            throw .malformed("a header value has control characters")
        }
        return (line.lowerBound..<colon, start..<end)
    }

    /// RFC 9110 `tchar`.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "*"),
            UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"),
            UInt8(ascii: "~"):
            true
        default: false
        }
    }

    private static func equals(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ text: StaticString) -> Bool {
        range.count == text.utf8CodeUnitCount && memcmp(bytes.baseAddress! + range.lowerBound, text.utf8Start, range.count) == 0
    }

    private static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercase: StaticString) -> Bool {
        guard range.count == lowercase.utf8CodeUnitCount else { return false }
        return zip(bytes[range], UnsafeBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)).allSatisfy { $0 | 0x20 == $1 }
    }

    private static func equalsIgnoringCase(_ bytes: [UInt8], _ lowercase: StaticString) -> Bool {
        bytes.withUnsafeBytes { equalsIgnoringCase($0, 0..<bytes.count, lowercase) }
    }

    /// The lines of a head: ranges without their `\r\n` (or bare `\n`), up to `limit` bytes.
    private struct Lines {
        let bytes: UnsafeRawBufferPointer
        let limit: Int
        /// Where the next line starts.
        private(set) var position = 0

        init(bytes: UnsafeRawBufferPointer, limit: Int) {
            self.bytes = bytes
            self.limit = limit
        }

        /// The next line, or nil when its end has not arrived (yet, and within the limit).
        mutating func next() throws(HTTPHeadError) -> Range<Int>? {
            let searchEnd = min(bytes.count, limit)
            guard position <= searchEnd, let newline = bytes[position..<searchEnd].firstIndex(of: 0x0A) else {
                if bytes.count >= limit { throw .tooLarge }
                return nil
            }
            var end = newline
            if end > position, bytes[end - 1] == 0x0D { end -= 1 }
            guard !bytes[position..<end].contains(0x0D) else { throw .malformed("a CR not followed by LF") }
            defer { position = newline + 1 }
            return position..<end
        }
    }
}
