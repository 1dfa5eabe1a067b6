import TokenBrokerProtocol

/// The fast path of request decoding: one pass over the bytes of a request line for
/// the shape clients actually send — a flat object of ASCII strings, integers and
/// literals, e.g. `{"op":"token","scope":"https://storage.azure.com/.default","id":7}`.
///
/// It either produces exactly the `BrokerRequest` that `JSONDecoder` would, or nil:
/// anything outside that shape (escapes, non-ASCII, nested values, fractions,
/// duplicate keys, wrong types, invalid JSON) is left to `JSONDecoder`, which then
/// decodes it or words the error. So the scanner never decides what is an error, and
/// never needs to be complete. `FuzzNDJSON` and `RequestScannerTests` check the two
/// agree.
enum RequestScanner {
    static func scan(_ bytes: UnsafeRawBufferPointer) -> BrokerRequest? {
        var scanner = Cursor(bytes: bytes)
        return scanner.request()
    }

    /// Whether any byte of `word` may end a plain string or leave the fast path: a `"`, a
    /// backslash, a control character or a byte that is not ASCII. The classic test for a
    /// zero byte, `(x - 0x01…) & ~x & 0x80…`, and its "less than" form; as a yes or no it
    /// is exact, and the byte loop after it decides anyway.
    static func holdsSpecialByte(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let quote = word ^ (ones &* UInt64(UInt8(ascii: "\"")))
        let backslash = word ^ (ones &* UInt64(UInt8(ascii: "\\")))
        let zeroInQuote = (quote &- ones) & ~quote
        let zeroInBackslash = (backslash &- ones) & ~backslash
        let control = (word &- ones &* 0x20) & ~word
        return (zeroInQuote | zeroInBackslash | control | word) & highs != 0
    }

    private struct Cursor {
        let bytes: UnsafeRawBufferPointer
        var index = 0

        init(bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
        }

        /// One value of a known field, or of a field the request does not have.
        private enum Value {
            case string(String)
            case integer(Int64)
            case null
            case other  // true, false, or a number that is not an integer: fine to skip, wrong for a known field
        }

        mutating func request() -> BrokerRequest? {
            guard skipWhitespace(), take(UInt8(ascii: "{")) else { return nil }
            var fields = Fields()
            guard skipWhitespace() else { return nil }
            if !take(UInt8(ascii: "}")) {
                repeat {
                    guard skipWhitespace(), let key = keyBytes(), skipWhitespace(), take(UInt8(ascii: ":")), skipWhitespace(),
                        let value = value(), fields.set(key, value), skipWhitespace()
                    else { return nil }
                } while take(UInt8(ascii: ","))
                guard take(UInt8(ascii: "}")) else { return nil }
            }
            // Only whitespace may follow the object.
            _ = skipWhitespace()
            guard index == bytes.count else { return nil }
            return fields.request()
        }

        /// The known fields read so far: nil for a field not seen, `.some(nil)` for one
        /// that was `null`.
        private struct Fields {
            var op: String?
            var id: RequestID??
            var scope, resource, identity, clientId, tenantId, volume: String??
            var minValidity: Int??

            /// Takes `value` for `key`; false for what `JSONDecoder` must judge: a wrong type, or
            /// a known key sent twice (whatever it makes of them).
            @inline(__always)
            mutating func set(_ key: StaticKey, _ value: Value) -> Bool {
                switch key {
                case "op":
                    guard op == nil, case .string(let text) = value else { return false }
                    op = text
                    return true
                case "id":
                    guard id == nil else { return false }
                    switch value {
                    case .string(let text): id = .some(.string(text))
                    case .integer(let number): id = .some(.number(number))
                    case .null: id = .some(nil)
                    case .other: return false
                    }
                    return true
                case "scope": return Self.set(&scope, value)
                case "resource": return Self.set(&resource, value)
                case "identity": return Self.set(&identity, value)
                case "clientId": return Self.set(&clientId, value)
                case "tenantId": return Self.set(&tenantId, value)
                case "volume": return Self.set(&volume, value)
                case "minValiditySeconds":
                    guard minValidity == nil else { return false }
                    switch value {
                    case .integer(let number): minValidity = .some(Int(number))
                    case .null: minValidity = .some(nil)
                    case .string, .other: return false
                    }
                    return true
                default:
                    return true  // unknown fields are ignored, as JSONDecoder does
                }
            }

            /// A string or null for an optional string field not seen before.
            @inline(__always)
            private static func set(_ field: inout String??, _ value: Value) -> Bool {
                guard field == nil else { return false }
                switch value {
                case .string(let text): field = .some(text)
                case .null: field = .some(nil)
                case .integer, .other: return false
                }
                return true
            }

            func request() -> BrokerRequest? {
                guard let op else { return nil }
                return BrokerRequest(
                    op: op, id: id ?? nil, scope: scope ?? nil, resource: resource ?? nil, identity: identity ?? nil,
                    minValiditySeconds: minValidity ?? nil, clientId: clientId ?? nil, tenantId: tenantId ?? nil, volume: volume ?? nil)
            }
        }

        /// Skips JSON whitespace; false at the end of the input (nothing left to read).
        private mutating func skipWhitespace() -> Bool {
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): index += 1
                default: return true
                }
            }
            return false
        }

        private mutating func take(_ byte: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        /// The bytes of a plain string (ASCII, no escapes), after its opening quote was seen.
        private mutating func plainStringBytes() -> UnsafeRawBufferPointer? {
            let start = index
            // Eight bytes at a time while none of them ends the string or leaves the fast
            // path; the byte loop below then finds which one it was.
            while index + 8 <= bytes.count, !RequestScanner.holdsSpecialByte(bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)) {
                index += 8
            }
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    defer { index += 1 }
                    return UnsafeRawBufferPointer(rebasing: bytes[start..<index])
                }
                // Control characters are invalid JSON; escapes and non-ASCII are JSONDecoder's.
                guard byte >= 0x20, byte < 0x80, byte != UInt8(ascii: "\\") else { return nil }
                index += 1
            }
            return nil
        }

        private mutating func keyBytes() -> StaticKey? {
            guard take(UInt8(ascii: "\"")), let key = plainStringBytes() else { return nil }
            return StaticKey(key)
        }

        private mutating func value() -> Value? {
            guard index < bytes.count else { return nil }
            switch bytes[index] {
            case UInt8(ascii: "\""):
                index += 1
                return plainStringBytes().map { .string(String(decoding: $0, as: UTF8.self)) }
            case UInt8(ascii: "n"): return literal("null") ? .null : nil
            case UInt8(ascii: "t"): return literal("true") ? .other : nil
            case UInt8(ascii: "f"): return literal("false") ? .other : nil
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
            default: return nil  // objects and arrays: JSONDecoder's
            }
        }

        private mutating func literal(_ word: StaticString) -> Bool {
            let count = word.utf8CodeUnitCount
            guard bytes.count - index >= count else { return false }
            for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { return false }
            index += count
            return true
        }

        /// An integer without fraction or exponent that fits Int64; `.other` for a valid
        /// JSON number that is not one; nil for anything that is not a JSON number or that
        /// JSONDecoder might read differently (`-0`).
        private mutating func number() -> Value? {
            let start = index
            let negative = take(UInt8(ascii: "-"))
            let digitsStart = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            let digits = index - digitsStart
            guard digits > 0, digits == 1 || bytes[digitsStart] != UInt8(ascii: "0") else { return nil }  // no leading zeros
            if index < bytes.count, [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(bytes[index]) {
                return skipFractionAndExponent() ? .other : nil
            }
            guard digits <= 18 else { return nil }  // may not fit Int64: JSONDecoder's
            var value: Int64 = 0
            for offset in digitsStart..<index { value = value * 10 + Int64(bytes[offset] - UInt8(ascii: "0")) }
            if negative {
                guard value != 0 else { index = start; return nil }
                value = -value
            }
            return .integer(value)
        }

        private mutating func skipFractionAndExponent() -> Bool {
            func digits(_ cursor: inout Cursor) -> Bool {
                let start = cursor.index
                while cursor.index < cursor.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(cursor.bytes[cursor.index]) {
                    cursor.index += 1
                }
                return cursor.index > start
            }
            if take(UInt8(ascii: ".")), !digits(&self) { return false }
            if take(UInt8(ascii: "e")) || take(UInt8(ascii: "E")) {
                if !take(UInt8(ascii: "+")) { _ = take(UInt8(ascii: "-")) }
                return digits(&self)
            }
            return true
        }
    }

    /// A key compared without allocating a String.
    private struct StaticKey {
        let bytes: UnsafeRawBufferPointer
        init(_ bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
        }

        static func ~= (pattern: StaticString, key: StaticKey) -> Bool {
            let count = pattern.utf8CodeUnitCount
            guard key.bytes.count == count else { return false }
            for offset in 0..<count where key.bytes[offset] != pattern.utf8Start[offset] { return false }
            return true
        }
    }
}
