import FoundationEssentials
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

    /// Encodes `response` as JSON (`JSONWriter`, through `jsonBytes()`), followed by `\n`
    /// when `newline` is true. Not per answer on the hot path: a repeated answer is kept
    /// encoded (`AnswerMemo`) and only its `id` is spliced in (`withID`).
    static func encode(_ response: BrokerResponse, allocator: ByteBufferAllocator, newline: Bool = false) -> ByteBuffer {
        let bytes = response.jsonBytes()
        var buffer = allocator.buffer(capacity: bytes.count + 1)
        buffer.writeBytes(bytes)
        if newline { buffer.writeInteger(WireBytes.lineEnd) }
        return buffer
    }

    /// `encoded`, an answer encoded without an `id` (so starting `{"ok":`), with `"id":…,`
    /// after its `{`: byte for byte what encoding the answer with `id` gives. The buffer
    /// itself when `id` is nil; nil when a string `id` needs escaping.
    static func withID(_ id: RequestID?, encodedWithoutID encoded: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard let id else { return encoded }
        var buffer = allocator.buffer(capacity: encoded.readableBytes + splicedIDBytes(id))
        return write(id, encodedWithoutID: encoded, to: &buffer) ? buffer : nil
    }

    /// Appends `encoded` with `"id":…,` spliced in after its `{` to `buffer` (an answer
    /// batch's): false, and nothing written, when a string `id` needs escaping.
    static func write(_ id: RequestID, encodedWithoutID encoded: ByteBuffer, to buffer: inout ByteBuffer) -> Bool {
        switch id {
        case .number(let number):
            buffer.writeStaticString(WireBytes.numberIDOpening)
            buffer.writeString(String(number))
            buffer.writeStaticString(WireBytes.numberIDEnd)
        case .string(let text):
            guard !JSONWriter.needsEscaping(text) else { return false }
            buffer.writeStaticString(WireBytes.stringIDOpening)
            buffer.writeString(text)
            buffer.writeStaticString(WireBytes.stringIDEnd)
        }
        var afterBrace = encoded
        afterBrace.moveReaderIndex(forwardBy: 1)
        buffer.writeBuffer(&afterBrace)
        return true
    }

    /// Room for the spliced `"id":…,` beyond the answer's own bytes.
    static func splicedIDBytes(_ id: RequestID) -> Int {
        switch id {
        case .number: 32
        case .string(let text): text.utf8.count + 32
        }
    }
}
