/// `application/x-www-form-urlencoded` as OAuth token endpoints expect (RFC 6749 Appendix B).
public enum FormEncoding {
    /// Encodes ordered name/value pairs.
    public static func encode(_ fields: [(String, String)]) -> String {
        fields.map { escape($0.0) + "=" + escape($0.1) }.joined(separator: "&")
    }

    /// Decodes a form body into ordered pairs; `+` is a space.
    public static func decode(_ body: String) -> [(String, String)] {
        body.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = unescape(parts[0])
            let value = parts.count > 1 ? unescape(parts[1]) : ""
            return (name, value)
        }
    }

    private static let unreserved: Set<UInt8> = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8))

    static func escape(_ text: String) -> String {
        var out = [UInt8]()
        out.reserveCapacity(text.utf8.count)
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in text.utf8 {
            if unreserved.contains(byte) {
                out.append(byte)
            } else if byte == UInt8(ascii: " ") {
                out.append(UInt8(ascii: "+"))
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes one name or value: `+` is a space, `%XX` a byte, a malformed escape kept
    /// literally (as lenient servers do), bytes that are not UTF-8 replaced.
    public static func unescape(_ text: some StringProtocol) -> String {
        String(decoding: PercentDecoding.decode(text.utf8, plusIsSpace: true, malformed: .keptLiterally) ?? [], as: UTF8.self)
    }
}

/// Percent-decoding (RFC 3986 §2.1): the one decoder of form bodies (`FormEncoding`, the dev
/// provider's forms) and of request targets (BrokerServer's `HTTPRequestTarget`, per request:
/// inlinable, so it is specialized for the bytes it is given).
public enum PercentDecoding {
    /// What a `%` not followed by two hex digits does.
    public enum Malformed: Sendable {
        /// It stays as it is (forms).
        case keptLiterally
        /// The text is refused (request targets: `URLComponents` decides those).
        case refused
    }

    /// The decoded bytes; nil when an escape is malformed and `malformed` is `.refused`.
    @inlinable
    public static func decode<Bytes: Collection<UInt8>>(_ bytes: Bytes, plusIsSpace: Bool, malformed: Malformed) -> [UInt8]? {
        var decoded: [UInt8] = []
        decoded.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index != bytes.endIndex {
            let byte = bytes[index]
            bytes.formIndex(after: &index)
            if byte == UInt8(ascii: "+"), plusIsSpace {
                decoded.append(UInt8(ascii: " "))
            } else if byte != UInt8(ascii: "%") {
                decoded.append(byte)
            } else if index != bytes.endIndex, let high = hexValue(bytes[index]),
                case let next = bytes.index(after: index), next != bytes.endIndex, let low = hexValue(bytes[next])
            {
                decoded.append(high << 4 | low)
                index = bytes.index(after: next)
            } else if malformed == .refused {
                return nil
            } else {
                decoded.append(byte)
            }
        }
        return decoded
    }

    @usableFromInline
    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
