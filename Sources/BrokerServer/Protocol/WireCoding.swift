import FoundationEssentials
import Glibc
import NIOCore
import PlainJSON
import TokenBrokerProtocol
import TokenExchange

/// Turns bytes into `BrokerRequest`s and `BrokerResponse`s into bytes, with
/// errors that say exactly what was wrong with a request.
enum WireCoding {
    /// Decodes one NDJSON request, or the `bad_request` error describing why not
    /// (with the request's `id` when one could be read, so the caller can match it).
    static func decodeRequest(_ bytes: ByteBuffer) -> Result<BrokerRequest, DecodeFailure> {
        if let request = bytes.withUnsafeReadableBytes(RequestScanner.scan) { return .success(request) }
        return decodeWithFoundation(bytes)
    }

    /// The general path (and the reference the scanner is checked against).
    static func decodeWithFoundation(_ bytes: ByteBuffer) -> Result<BrokerRequest, DecodeFailure> {
        let data = Data(bytes.readableBytesView)
        // One parse on the success path; only a failure is parsed again, to find the
        // `id` and to word the error exactly.
        do {
            return .success(try decoder.decode(BrokerRequest.self, from: data))
        } catch {
            return .failure(describe(error, data: data))
        }
    }

    /// A shared decoder: its options never change, and decoding is thread-safe.
    private static let decoder = JSONDecoder()

    private static func describe(_ decodingError: any Error, data: Data) -> DecodeFailure {
        guard let object = try? UntypedJSON.parse(data, allowingFragments: true) else {
            return DecodeFailure(id: nil, WireError(code: .badRequest, message: "the request line is not valid JSON"))
        }
        guard let fields = object as? [String: Any] else {
            return DecodeFailure(
                id: nil, WireError(code: .badRequest, message: "a request must be a JSON object such as {\"op\":\"token\",\"scope\":\"…\"}"))
        }
        let id: RequestID? =
            (fields["id"] as? String).map(RequestID.string)
            ?? (fields["id"] as? Double).flatMap { Int64(exactly: $0) }.map(RequestID.number)
            // JSONSerialization, used here before, read `true` as the number 1: kept so.
            ?? (fields["id"] as? Bool).map { RequestID.number($0 ? 1 : 0) }
        func failure(_ message: String) -> DecodeFailure {
            DecodeFailure(id: id, WireError(code: .badRequest, message: message))
        }
        switch decodingError {
        case DecodingError.keyNotFound(let key, _):
            return failure("the request has no '\(key.stringValue)' field")
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return failure("field '\(path(context.codingPath))' has the wrong type")
        case DecodingError.dataCorrupted(let context):
            return failure("field '\(path(context.codingPath))' is not a valid value")
        default:
            return failure("the request could not be decoded")
        }
    }

    /// A request that could not be decoded, with its `id` if it had a readable one.
    struct DecodeFailure: Error {
        var id: RequestID?
        var error: WireError
        init(id: RequestID?, _ error: WireError) {
            self.id = id
            self.error = error
        }
    }

    private static func path(_ codingPath: [any CodingKey]) -> String {
        codingPath.map(\.stringValue).joined(separator: ".")
    }

    /// The last token a connection sent that needed no escaping, so that the ~1.2 KB
    /// are scanned once per token and connection rather than once per answer
    /// (comparing bytes is several times cheaper than checking them).
    struct PlainTokenMemo {
        private var token: String?

        fileprivate func holds(_ candidate: String) -> Bool {
            guard var known = token else { return false }
            var candidate = candidate
            return known.withUTF8 { known in
                candidate.withUTF8 { candidate in
                    known.count == candidate.count && (known.isEmpty || memcmp(known.baseAddress!, candidate.baseAddress!, known.count) == 0)
                }
            }
        }

        fileprivate mutating func remember(_ plain: String) {
            token = plain
        }
    }

    /// Encodes `response` as JSON, followed by `\n` when `newline` is true, remembering in
    /// `memo` a token found to need no escaping.
    static func encode(_ response: BrokerResponse, allocator: ByteBufferAllocator, newline: Bool = false, memo: inout PlainTokenMemo) -> ByteBuffer {
        if let buffer = encodeToken(response, allocator: allocator, newline: newline, memo: &memo) { return buffer }
        let bytes = response.jsonBytes()
        var buffer = allocator.buffer(capacity: bytes.count + 1)
        buffer.writeBytes(bytes)
        if newline { buffer.writeInteger(UInt8(ascii: "\n")) }
        return buffer
    }

    /// The hot path: a token response (no `status`, no `error`) written straight into a
    /// buffer of the right size, each string copied whole. Byte for byte what
    /// `jsonBytes()` writes; nil when a string needs escaping (left to `jsonBytes()`).
    private static func encodeToken(
        _ response: BrokerResponse, allocator: ByteBufferAllocator, newline: Bool, memo: inout PlainTokenMemo
    ) -> ByteBuffer? {
        guard response.status == nil, response.error == nil, response.credentials == nil, let token = response.token else { return nil }
        var strings = token.utf8.count
        var plain = true
        func measure(_ text: String?) {
            guard let text else { return }
            if needsEscaping(text) { plain = false }
            strings += text.utf8.count
        }
        if !memo.holds(token) {
            guard !needsEscaping(token) else { return nil }
            memo.remember(token)
        }
        measure(response.tokenType)
        measure(response.identity)
        measure(response.scope)
        measure(response.serviceAccount)
        measure(response.clientId)
        if case .string(let id) = response.id { measure(id) }
        guard plain else { return nil }
        // One pass of plain copies into one reservation: each ByteBuffer write is an
        // exclusivity check and a capacity check, and there would be about twenty.
        var buffer = allocator.buffer(capacity: strings + 256)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: strings + 256) { raw in
            var out = RawWriter(raw)
            out.write("{")
            if let id = response.id { out.writeIDField(id) }
            /// `,"name":"value"` for a string already known to need no escaping.
            func stringField(_ prefix: StaticString, _ value: String?) {
                guard let value else { return }
                out.write(prefix)
                out.write(value)
                out.write("\"")
            }
            out.write(response.ok ? #""ok":true"# : #""ok":false"#)
            stringField(#","token":""#, token)
            stringField(#","tokenType":""#, response.tokenType)
            if let expiresOn = response.expiresOn {
                out.write(#","expiresOn":"#)
                out.write(expiresOn)
            }
            if let expiresIn = response.expiresIn {
                out.write(#","expiresIn":"#)
                out.write(expiresIn)
            }
            stringField(#","identity":""#, response.identity)
            stringField(#","scope":""#, response.scope)
            stringField(#","serviceAccount":""#, response.serviceAccount)
            stringField(#","clientId":""#, response.clientId)
            out.write(newline ? "}\n" : "}")
            return out.count
        }
        return buffer
    }

    /// `encoded`, an answer encoded without an `id` (so starting `{"ok":`), with `"id":…,`
    /// after its `{`: byte for byte what encoding the answer with `id` gives. The buffer
    /// itself when `id` is nil; nil when a string `id` needs escaping.
    static func withID(_ id: RequestID?, encodedWithoutID encoded: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard let id else { return encoded }
        var idLength = 0
        if case .string(let text) = id {
            guard !needsEscaping(text) else { return nil }
            idLength = text.utf8.count
        }
        let capacity = encoded.readableBytes + idLength + 32
        var buffer = allocator.buffer(capacity: capacity)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { raw in
            var out = RawWriter(raw)
            out.write("{")
            out.writeIDField(id)
            encoded.withUnsafeReadableBytes { out.write(UnsafeRawBufferPointer(rebasing: $0.dropFirst())) }
            return out.count
        }
        return buffer
    }

    /// Appends bytes to memory reserved for them; callers reserve for what they write (a
    /// precondition checks every copy).
    private struct RawWriter {
        let base: UnsafeMutableRawBufferPointer
        private(set) var count = 0

        init(_ base: UnsafeMutableRawBufferPointer) {
            self.base = base
        }

        mutating func write(_ text: StaticString) {
            copy(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        }

        mutating func write(_ text: String) {
            var text = text
            text.withUTF8 { copy(UnsafeRawBufferPointer($0)) }
        }

        mutating func write(_ number: Int64) {
            var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for 20 digits and a sign
            withUnsafeMutableBytes(of: &digits) { scratch in
                var magnitude = number.magnitude
                var end = scratch.count
                repeat {
                    end -= 1
                    scratch[end] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                    magnitude /= 10
                } while magnitude > 0
                if number < 0 {
                    end -= 1
                    scratch[end] = UInt8(ascii: "-")
                }
                copy(UnsafeRawBufferPointer(rebasing: scratch[end...]))
            }
        }

        /// `"id":7,` or `"id":"text",` (the text known to need no escaping).
        mutating func writeIDField(_ id: RequestID) {
            switch id {
            case .number(let n):
                write(#""id":"#)
                write(n)
                write(",")
            case .string(let text):
                write(#""id":""#)
                write(text)
                write(#"","#)
            }
        }

        mutating func write(_ bytes: UnsafeRawBufferPointer) {
            copy(bytes)
        }

        private mutating func copy(_ bytes: UnsafeRawBufferPointer) {
            precondition(count + bytes.count <= base.count, "RawWriter: reservation exceeded")
            guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
            (base.baseAddress! + count).copyMemory(from: source, byteCount: bytes.count)
            count += bytes.count
        }
    }

    /// Whether `text` has a byte that must be escaped in a JSON string.
    static func needsEscaping(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { utf8 in
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
            return raw[offset...].contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }
        }
    }
}
