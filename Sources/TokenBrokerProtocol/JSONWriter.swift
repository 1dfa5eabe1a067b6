/// The one JSON writer of the project's answers: fields come out in the documented order
/// (`id`, `ok`, then the payload), and a token answer (the hot path's, ~1.2 KB) costs one
/// scan and one copy per string instead of `JSONEncoder`'s reflection and per-byte
/// escaping. (Reading is elsewhere: the server's `RequestScanner`, and `PlainJSON` for the
/// CLI.) Public for the compatibility endpoints and the CLI, whose JSON shapes are someone else's.
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []
    /// One bit per open container, innermost lowest: set once it has an element (the
    /// next one needs a comma). A bit stack rather than an array: nothing to allocate.
    private var hasElement: UInt64 = 0
    private var depth = 0

    public init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    public mutating func beginObject() {
        bytes.append(UInt8(ascii: "{"))
        push()
    }

    public mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        pop()
    }

    private mutating func push() {
        precondition(depth < UInt64.bitWidth, "JSONWriter: nested deeper than \(UInt64.bitWidth)")
        depth += 1
        hasElement <<= 1
    }

    private mutating func pop() {
        precondition(depth > 0, "JSONWriter: a container ended that was not begun")
        depth -= 1
        hasElement >>= 1
    }

    public mutating func beginArray(_ key: String) {
        self.key(key)
        bytes.append(UInt8(ascii: "["))
        push()
    }

    public mutating func endArray() {
        bytes.append(UInt8(ascii: "]"))
        pop()
    }

    public mutating func key(_ key: String) {
        separator()
        string(key)
        bytes.append(UInt8(ascii: ":"))
    }

    /// Writes a comma before every element but the first of the current container.
    public mutating func separator() {
        guard depth > 0 else { return }
        if hasElement & 1 != 0 { bytes.append(UInt8(ascii: ",")) }
        hasElement |= 1
    }

    public mutating func field(_ name: String, _ value: String?) {
        guard let value else { return }
        key(name)
        string(value)
    }

    public mutating func field(_ name: String, _ value: Int64?) {
        guard let value else { return }
        key(name)
        bytes.append(contentsOf: String(value).utf8)
    }

    public mutating func field(_ name: String, _ value: Int?) {
        field(name, value.map(Int64.init))
    }

    public mutating func field(_ name: String, _ value: Bool?) {
        guard let value else { return }
        key(name)
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    public mutating func element(_ value: String) {
        separator()
        string(value)
    }

    public mutating func element(_ value: Int) {
        separator()
        bytes.append(contentsOf: String(value).utf8)
    }

    private static let hex = Array("0123456789abcdef".utf8)

    public mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        var value = value
        // Contiguous UTF-8: a string that needs no escaping (all of a base64url JWT) goes
        // in with one copy, and one with escapes in runs between them.
        value.withUTF8 { utf8 in
            guard Self.needsEscaping(utf8) else { return bytes.append(contentsOf: utf8) }
            var runStart = 0
            for (index, byte) in utf8.enumerated() where Self.needsEscaping(byte) {
                if runStart < index { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index])) }
                appendEscaped(byte)
                runStart = index + 1
            }
            if runStart < utf8.count { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...])) }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// Whether `byte` cannot appear as is inside a JSON string.
    @inline(__always)
    static func needsEscaping(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }

    /// Whether `text` has a byte that must be escaped in a JSON string: what `string`
    /// copies as it is when false.
    public static func needsEscaping(_ text: String) -> Bool {
        var text = text
        return text.withUTF8(needsEscaping)
    }

    private static func needsEscaping(_ utf8: UnsafeBufferPointer<UInt8>) -> Bool {
        // Eight bytes per step (a token is ~1.2 KB and never needs escaping): a word
        // has a byte below 0x20, a quote or a backslash exactly when these are non-zero.
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        func hasZeroByte(_ word: UInt64) -> Bool { (word &- ones) & ~word & highs != 0 }
        let raw = UnsafeRawBufferPointer(utf8)
        var offset = 0
        while offset + 8 <= raw.count {
            let word = raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            if (word &- ones &* 0x20) & ~word & highs != 0 || hasZeroByte(word ^ (ones &* 0x22)) || hasZeroByte(word ^ (ones &* 0x5C)) {
                return true
            }
            offset += 8
        }
        return raw[offset...].contains(where: needsEscaping)
    }

    private mutating func appendEscaped(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
        case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
        case UInt8(ascii: "\n"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
        case UInt8(ascii: "\r"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
        case UInt8(ascii: "\t"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
        default:
            bytes.append(contentsOf: [
                UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), Self.hex[Int(byte >> 4)], Self.hex[Int(byte & 0xF)],
            ])
        }
    }

    /// The JSON written so far, as text.
    public var text: String { String(decoding: bytes, as: UTF8.self) }
}
