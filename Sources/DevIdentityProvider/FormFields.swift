/// An `application/x-www-form-urlencoded` body, fields kept in the order they were sent.
struct FormFields: Sendable {
    /// Every `name=value` pair, decoded, in order (repeated names kept).
    let pairs: [(name: String, value: String)]

    init(_ body: [UInt8]) {
        let text = String(decoding: body, as: UTF8.self)
        pairs = text.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = Self.percentDecode(parts[0])
            let value = parts.count > 1 ? Self.percentDecode(parts[1]) : ""
            return (name, value)
        }
    }

    /// Field names in the order sent, for the stats log.
    var names: [String] { pairs.map(\.name) }

    /// The first value of `name`, nil when absent.
    subscript(_ name: String) -> String? {
        pairs.first { $0.name == name }?.value
    }

    /// `+` is a space; `%XX` a byte; malformed escapes are kept literally, as lenient servers do.
    static func percentDecode(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.popFirst() {
            switch byte {
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                if iterator.count >= 2,
                    let value = UInt8(String(decoding: iterator.prefix(2), as: UTF8.self), radix: 16)
                {
                    bytes.append(value)
                    iterator = iterator.dropFirst(2)
                } else {
                    bytes.append(byte)
                }
            default:
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
