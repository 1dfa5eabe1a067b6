/// JSON as untyped values, for documents read field by field (token service answers, JWT
/// payloads, plugin answers) — what `JSONSerialization` gave, without full Foundation (whose
/// ICU data table alone is 34 MB of every binary that links it). Values are `[String: Any]`,
/// `[Any]`, `String`, `Double` (every number), `Bool` and `JSONNull`.
public enum UntypedJSON {
    /// Why bytes are not JSON.
    public struct Invalid: Error, Sendable {
        /// Byte offset of the problem.
        public var offset: Int
    }

    /// Deeper nesting is refused rather than recursed into (JSONSerialization's limit).
    static let maxDepth = 512

    /// The value of a complete JSON text: an object or array, or with `allowingFragments` any
    /// value (JSONSerialization's `.fragmentsAllowed`).
    public static func parse(_ bytes: some Collection<UInt8>, allowingFragments: Bool = false) throws(Invalid) -> Any {
        let bytes = Array(bytes)
        var reader = UntypedJSONReader(bytes: bytes)
        // A UTF-8 byte order mark is skipped, as JSONSerialization did.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { reader.index = 3 }
        reader.skipSpace()
        if !allowingFragments, reader.index < bytes.count, bytes[reader.index] != UInt8(ascii: "{"), bytes[reader.index] != UInt8(ascii: "[") {
            throw Invalid(offset: reader.index)
        }
        let value = try reader.value(depth: 0)
        reader.skipSpace()
        guard reader.index == bytes.count else { throw Invalid(offset: reader.index) }
        return value
    }

    /// The JSON object `bytes` hold, or nil when they hold anything else.
    public static func object(_ bytes: some Collection<UInt8>) -> [String: Any]? {
        (try? parse(bytes)) as? [String: Any]
    }

    /// One line of JSON for string fields, keys sorted as `JSONSerialization`'s `.sortedKeys`
    /// sorted them (case-insensitively), `/` not escaped.
    public static func serialize(_ object: [String: String]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "{")]
        let keys = object.keys.sorted { ($0.lowercased(), $0) < ($1.lowercased(), $1) }
        for (index, key) in keys.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            appendString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            appendString(object[key]!, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// `text` as a JSON string: quotes, backslashes and control characters escaped, `/` not.
    static func appendString(_ text: String, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), byte]
            case UInt8(ascii: "\n"): out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case UInt8(ascii: "\r"): out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case UInt8(ascii: "\t"): out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20:
                out += [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// JSON `null` among untyped values.
public struct JSONNull: Sendable, Equatable {
    public init() {}
}
