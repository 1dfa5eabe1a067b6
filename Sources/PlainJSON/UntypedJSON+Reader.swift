/// The recursive-descent reader behind `UntypedJSON.parse` (RFC 8259, strict: no comments,
/// no trailing commas, no control characters or invalid UTF-8 in strings, no lone surrogates).
struct UntypedJSONReader {
    let bytes: [UInt8]
    var index = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    private var invalid: UntypedJSON.Invalid { UntypedJSON.Invalid(offset: index) }

    mutating func skipSpace() {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
    }

    mutating func value(depth: Int) throws(UntypedJSON.Invalid) -> Any {
        guard depth < UntypedJSON.maxDepth else { throw invalid }
        skipSpace()
        guard index < bytes.count else { throw invalid }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return try string()
        case UInt8(ascii: "t"): try literal("true"); return true
        case UInt8(ascii: "f"): try literal("false"); return false
        case UInt8(ascii: "n"): try literal("null"); return JSONNull()
        default: return try number()
        }
    }

    private mutating func literal(_ word: StaticString) throws(UntypedJSON.Invalid) {
        let text = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
        guard bytes.count - index >= text.count, bytes[index..<index + text.count].elementsEqual(text) else { throw invalid }
        index += text.count
    }

    private mutating func object(depth: Int) throws(UntypedJSON.Invalid) -> [String: Any] {
        index += 1
        var result: [String: Any] = [:]
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return result }
        while true {
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw invalid }
            let key = try string()
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw invalid }
            index += 1
            result[key] = try value(depth: depth + 1)
            skipSpace()
            guard index < bytes.count else { throw invalid }
            if bytes[index] == UInt8(ascii: "}") { index += 1; return result }
            guard bytes[index] == UInt8(ascii: ",") else { throw invalid }
            index += 1
        }
    }

    private mutating func array(depth: Int) throws(UntypedJSON.Invalid) -> [Any] {
        index += 1
        var result: [Any] = []
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return result }
        while true {
            result.append(try value(depth: depth + 1))
            skipSpace()
            guard index < bytes.count else { throw invalid }
            if bytes[index] == UInt8(ascii: "]") { index += 1; return result }
            guard bytes[index] == UInt8(ascii: ",") else { throw invalid }
            index += 1
        }
    }

    private mutating func string() throws(UntypedJSON.Invalid) -> String {
        index += 1
        var utf8: [UInt8] = []
        while true {
            guard index < bytes.count else { throw invalid }
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                guard let text = String(validating: utf8, as: UTF8.self) else { throw invalid }
                return text
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { throw invalid }
                let escaped = bytes[index]
                index += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escaped)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"): utf8 += try unicodeEscape()
                default: throw invalid
                }
            case 0..<0x20:
                throw invalid
            default:
                utf8.append(byte)
                index += 1
            }
        }
    }

    /// `\uXXXX` (after the `u`), a surrogate pair as two of them.
    private mutating func unicodeEscape() throws(UntypedJSON.Invalid) -> [UInt8] {
        let high = try hex4()
        var scalar: Unicode.Scalar?
        if (0xD800..<0xDC00).contains(high) {
            guard bytes.count - index >= 2, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else { throw invalid }
            index += 2
            let low = try hex4()
            guard (0xDC00..<0xE000).contains(low) else { throw invalid }
            scalar = Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
        } else {
            scalar = Unicode.Scalar(high)
        }
        guard let scalar else { throw invalid }
        return Array(String(Character(scalar)).utf8)
    }

    private mutating func hex4() throws(UntypedJSON.Invalid) -> UInt32 {
        guard bytes.count - index >= 4 else { throw invalid }
        var value: UInt32 = 0
        for byte in bytes[index..<index + 4] {
            guard let digit = Int(String(UnicodeScalar(byte)), radix: 16) else { throw invalid }
            value = value << 4 | UInt32(digit)
        }
        index += 4
        return value
    }

    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`, as a Double (too large: infinity).
    private mutating func number() throws(UntypedJSON.Invalid) -> Double {
        let start = index
        func digits() -> Int {
            let first = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            return index - first
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
        let integerStart = index
        let integerDigits = digits()
        guard integerDigits > 0, integerDigits == 1 || bytes[integerStart] != UInt8(ascii: "0") else { throw invalid }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { throw invalid }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { throw invalid }
        }
        guard let value = Double(String(decoding: bytes[start..<index], as: UTF8.self)) else { throw invalid }
        return value
    }
}
