/// An origin-form request target (`/path?name=value&…`) read as `URLComponents` read it for
/// the relay before (without Foundation): characters outside RFC 3986's sets refused, path and
/// query items percent-decoded, `+` left as is, a fragment dropped.
enum RelayRequestTarget {
    /// The decoded path and query items, or nil when `target` is not a valid origin-form target.
    static func parse(_ target: String) -> (path: String, query: [(name: String, value: String)])? {
        guard target.hasPrefix("/"), !target.hasPrefix("//") else { return nil }
        var rest = Substring(target)
        if let hash = rest.firstIndex(of: "#") {
            guard isValid(rest[rest.index(after: hash)...], allowing: "/?") else { return nil }
            rest = rest[..<hash]
        }
        let question = rest.firstIndex(of: "?")
        let pathPart = rest[..<(question ?? rest.endIndex)]
        guard isValid(pathPart, allowing: "/"), let path = percentDecoded(pathPart) else { return nil }
        guard let question else { return (path, []) }
        let queryPart = rest[rest.index(after: question)...]
        guard isValid(queryPart, allowing: "/?") else { return nil }
        var query: [(name: String, value: String)] = []
        for item in queryPart.split(separator: "&", omittingEmptySubsequences: false) where !queryPart.isEmpty {
            let equals = item.firstIndex(of: "=")
            let value = equals.map { percentDecoded(item[item.index(after: $0)...]) } ?? ""
            guard let name = percentDecoded(item[..<(equals ?? item.endIndex)]), let value else { return nil }
            query.append((name, value))
        }
        return (path, query)
    }

    /// Whether `part` holds only RFC 3986 `pchar`s (unreserved, sub-delims, `:`, `@`, and `%`
    /// with two hex digits) and `extra`.
    private static func isValid(_ part: Substring, allowing extra: String) -> Bool {
        let bytes = Array(part.utf8)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, hexValue(bytes[index + 1]) != nil, hexValue(bytes[index + 2]) != nil else { return false }
                index += 3
                continue
            }
            let allowed =
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || "-._~!$&'()*+,;=:@".utf8.contains(byte) || extra.utf8.contains(byte)
            guard allowed else { return false }
            index += 1
        }
        return true
    }

    /// `%XX` decoded; nil when the result is not UTF-8.
    private static func percentDecoded(_ part: Substring) -> String? {
        let bytes = Array(part.utf8)
        var decoded: [UInt8] = []
        decoded.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
            {
                decoded.append(high << 4 | low)
                index += 3
            } else {
                decoded.append(bytes[index])
                index += 1
            }
        }
        return String(validating: decoded, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
