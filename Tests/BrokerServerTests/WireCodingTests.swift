import Testing

@testable import BrokerServer

@Suite struct WireCodingTests {
    /// The word-at-a-time escape check agrees with the byte-by-byte definition for every
    /// byte value at every position of a word and in the tail.
    @Test func escapeCheckMatchesTheDefinition() {
        let base = Array(repeating: UInt8(ascii: "A"), count: 19)
        for position in base.indices {
            for byte in UInt8(0)...0x7F {
                var bytes = base
                bytes[position] = byte
                let text = String(decoding: bytes, as: UTF8.self)
                let expected = byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
                #expect(WireCoding.needsEscaping(text) == expected, "byte \(byte) at \(position)")
            }
        }
        #expect(!WireCoding.needsEscaping("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl-_"))
        #expect(!WireCoding.needsEscaping("bücher ✓ 𝄞 plain"))
        #expect(WireCoding.needsEscaping("tab\there"))
    }
}
