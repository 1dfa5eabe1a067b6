import FoundationEssentials
import Glibc
import TokenExchange

/// The path and query parameters of an HTTP request target, percent-decoded.
///
/// The usual target (`/v1/token?scope=https%3A%2F%2Fvault.azure.net%2F.default`) is
/// split in one pass over its bytes; anything else — absolute form, fragments, empty
/// parameters, characters RFC 3986 does not allow, bad escapes — goes to
/// `URLComponents`, which the fast path agrees with wherever it answers
/// (`HTTPRequestTargetTests`). `+` stays `+`, as in `URLComponents`.
struct HTTPRequestTarget {
    var path: String
    var query: [(name: String, value: String)]
    /// A `%` not followed by two hexadecimal digits: `URLComponents` keeps such an escape as
    /// it is, so the routes refuse the request rather than pass `%zz` on as a scope.
    var malformedEscape = false

    init(_ uri: String) {
        if let plain = Self.originForm(uri) {
            self = plain
            return
        }
        let components = URLComponents(string: uri)
        path = components?.path ?? uri
        query = (components?.queryItems ?? []).map { ($0.name, $0.value ?? "") }
        malformedEscape = Self.hasMalformedEscape(uri)
    }

    /// Whether a `%` in `uri` is not followed by two hexadecimal digits.
    static func hasMalformedEscape(_ uri: String) -> Bool {
        PercentDecoding.decode(uri.utf8, plusIsSpace: false, malformed: .refused) == nil
    }

    /// The first parameter of `names` given more than once, if any.
    func repeated(among names: [String]) -> String? {
        names.first { name in query.count { $0.name == name } > 1 }
    }

    private init(path: String, query: [(name: String, value: String)]) {
        self.path = path
        self.query = query
    }

    /// The first value of parameter `name`.
    func first(_ name: String) -> String? {
        query.first { $0.name == name }?.value
    }

    /// `/path?name=value&…` with only plain characters and valid escapes; nil otherwise.
    static func originForm(_ uri: String) -> HTTPRequestTarget? {
        var uri = uri
        return uri.withUTF8 { bytes -> HTTPRequestTarget? in
            // `//…` starts an authority (a host) in URLComponents' reading.
            guard bytes.first == UInt8(ascii: "/"), bytes.count < 2 || bytes[1] != UInt8(ascii: "/"), bytes.allSatisfy(isAllowed) else { return nil }
            let questionMark = bytes.firstIndex(of: UInt8(ascii: "?")) ?? bytes.endIndex
            guard let path = decode(bytes[..<questionMark]) else { return nil }
            guard questionMark < bytes.endIndex else { return HTTPRequestTarget(path: path, query: []) }
            var query: [(name: String, value: String)] = []
            for item in bytes[(questionMark + 1)...].split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: false) {
                guard !item.isEmpty else { return nil }  // `?`, `a&&b`, a trailing `&`: URLComponents's call
                let equals = item.firstIndex(of: UInt8(ascii: "=")) ?? item.endIndex
                guard let name = decode(item[..<equals]),
                    let value = equals == item.endIndex ? "" : decode(item[(equals + 1)...])
                else { return nil }
                query.append((name, value))
            }
            return HTTPRequestTarget(path: path, query: query)
        }
    }

    /// Percent-decodes `bytes`; nil for a malformed escape or bytes that are not UTF-8.
    private static func decode(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> String? {
        guard bytes.contains(UInt8(ascii: "%")) else { return String(decoding: bytes, as: UTF8.self) }
        return PercentDecoding.decode(bytes, plusIsSpace: false, malformed: .refused).flatMap { String(validating: $0, as: UTF8.self) }
    }

    /// RFC 3986 unreserved and sub-delimiter characters, `:`, `@`, `/`, `?` and `%`.
    private static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"): true
        case UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="):
            true
        case UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "/"), UInt8(ascii: "?"), UInt8(ascii: "%"): true
        default: false
        }
    }
}
