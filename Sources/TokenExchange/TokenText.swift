/// An access token's text, kept in three quarters of the memory when it is a JWT (as Entra's
/// are): the bytes its three base64url segments encode. A cache of 10,000 Entra tokens holds
/// 12.8 MB of them as text, 9.6 MB as bytes. Any other token (AWS session tokens, opaque
/// ones), and a JWT that would not encode again to the very same text, is kept as it came.
///
/// `string` gives the text back exactly, encoding it each time it is asked for: once per
/// answer that is not a connection's repeat (`AnswerMemo`), a few microseconds.
struct TokenText: Sendable {
    private enum Storage: Sendable {
        case text(String)
        /// The three segments' bytes one after the other, and the first two's lengths.
        case jwt(bytes: [UInt8], header: UInt32, payload: UInt32)
    }

    private let storage: Storage
    private static let dot = UInt8(ascii: ".")

    init(_ text: String) {
        storage = Self.decodedJWT(text) ?? .text(text)
    }

    /// The token as it was issued.
    var string: String {
        switch storage {
        case .text(let text):
            return text
        case .jwt(let bytes, let header, let payload):
            let lengths = Self.segmentLengths(bytes: bytes.count, header: header, payload: payload)
            let count = Self.textLength(lengths)
            return bytes.withUnsafeBytes { bytes in
                String(unsafeUninitializedCapacity: count) { target in
                    var (read, written) = (0, 0)
                    for (index, length) in [lengths.header, lengths.payload, lengths.signature].enumerated() {
                        if index > 0 {
                            target[written] = Self.dot
                            written += 1
                        }
                        Base64URL.encode(UnsafeRawBufferPointer(rebasing: bytes[read..<read + length]), to: target.baseAddress! + written)
                        read += length
                        written += Base64URL.encodedCount(length)
                    }
                    return count
                }
            }
        }
    }

    /// The length of `string` in UTF-8 bytes, without making it.
    var utf8Count: Int {
        switch storage {
        case .text(let text):
            return text.utf8.count
        case .jwt(let bytes, let header, let payload):
            return Self.textLength(Self.segmentLengths(bytes: bytes.count, header: header, payload: payload))
        }
    }

    private typealias SegmentLengths = (header: Int, payload: Int, signature: Int)

    private static func segmentLengths(bytes: Int, header: UInt32, payload: UInt32) -> SegmentLengths {
        (Int(header), Int(payload), bytes - Int(header) - Int(payload))
    }

    /// The three segments encoded, and the two dots between them.
    private static func textLength(_ lengths: SegmentLengths) -> Int {
        Base64URL.encodedCount(lengths.header) + Base64URL.encodedCount(lengths.payload) + Base64URL.encodedCount(lengths.signature) + 2
    }

    /// Whether it is kept as bytes (for tests).
    var isDecoded: Bool {
        if case .jwt = storage { return true }
        return false
    }

    /// `text` as a JWT's three segments decoded, if it is one that encodes back to itself.
    private static func decodedJWT(_ text: String) -> Storage? {
        var text = text
        return text.withUTF8 { utf8 -> Storage? in
            let raw = UnsafeRawBufferPointer(utf8)
            guard let first = raw.firstIndex(of: dot), let second = raw[(first + 1)...].firstIndex(of: dot),
                !raw[(second + 1)...].contains(dot)
            else { return nil }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(raw.count / 4 * 3 + 3)
            guard Base64URL.decodeExactly(UnsafeRawBufferPointer(rebasing: raw[..<first]), appendingTo: &bytes) else { return nil }
            let header = bytes.count
            guard Base64URL.decodeExactly(UnsafeRawBufferPointer(rebasing: raw[(first + 1)..<second]), appendingTo: &bytes) else { return nil }
            let payload = bytes.count - header
            guard Base64URL.decodeExactly(UnsafeRawBufferPointer(rebasing: raw[(second + 1)...]), appendingTo: &bytes) else { return nil }
            return .jwt(bytes: bytes, header: UInt32(header), payload: UInt32(payload))
        }
    }
}
