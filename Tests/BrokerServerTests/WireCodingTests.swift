import NIOCore
import Testing
import TokenBrokerProtocol

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

    /// The token fast path writes exactly what the general JSON writer writes.
    @Test(arguments: [
        BrokerResponse(
            id: .number(7), ok: true, token: "eyJ0eXAiOiJKV1QifQ.e30.c2ln", tokenType: "Bearer", expiresOn: 1_764_400_000, expiresIn: 3599,
            identity: "default", scope: "https://storage.azure.com/.default"),
        BrokerResponse(
            id: .number(Int64.min), ok: true, token: "t", tokenType: "Bearer", expiresOn: Int64.max, expiresIn: -5, identity: "a", scope: "s"),
        BrokerResponse(id: .number(0), ok: true, token: "", expiresIn: 0),
        BrokerResponse(id: .string("req-1"), ok: true, token: "t", identity: "web"),
        BrokerResponse(id: .string(""), ok: false, token: "t"),
        BrokerResponse(id: nil, ok: true, token: "t", tokenType: "Bearer", scope: "https://vault.azure.net/.default"),
        BrokerResponse(id: .string("needs \"escaping\""), ok: true, token: "t"),
        BrokerResponse(id: nil, ok: true, token: "tab\there", scope: "s"),
        BrokerResponse(id: .number(1), ok: true, token: "t", scope: "bücher/✓"),
    ])
    func tokenAnswersAreWrittenAsTheJSONWriterWritesThem(_ response: BrokerResponse) {
        for newline in [false, true] {
            var memo = WireCoding.PlainTokenMemo()
            for _ in 0..<2 {  // the second time, the token is known to be plain
                let buffer = WireCoding.encode(response, allocator: ByteBufferAllocator(), newline: newline, memo: &memo)
                #expect(Array(buffer.readableBytesView) == response.jsonBytes() + (newline ? [UInt8(ascii: "\n")] : []))
            }
        }
    }

    /// An answer encoded without an id, with the id spliced in, is what encoding it with
    /// the id writes (token answers, AWS credentials, errors).
    @Test(arguments: [
        BrokerResponse(
            id: nil, ok: true, token: "eyJ0eXAiOiJKV1QifQ.e30.c2ln", tokenType: "Bearer", expiresOn: 1_764_400_000, expiresIn: 3599,
            identity: "default", scope: "https://storage.azure.com/.default"),
        BrokerResponse(
            id: nil, ok: true, expiresOn: 1, expiresIn: 2, identity: "aws", scope: "sts",
            credentials: AWSCredentialsObject(accessKeyId: "AKIA", secretAccessKey: "s", sessionToken: "t", expiration: "2026-11-29T05:00:00Z")),
        BrokerResponse(id: nil, ok: true, token: "tab\there"),
        .failure(id: nil, WireError(code: .throttled, message: "slow down", retryable: true, retryAfter: 1)),
    ])
    func idsSplicedIntoAnAnswerEncodedWithout(_ response: BrokerResponse) throws {
        var memo = WireCoding.PlainTokenMemo()
        let encoded = WireCoding.encode(response, allocator: ByteBufferAllocator(), newline: true, memo: &memo)
        for id: RequestID? in [nil, .number(0), .number(.min), .number(.max), .string(""), .string("req-1"), .string("ünï")] {
            var withID = response
            withID.id = id
            let spliced = try #require(WireCoding.withID(id, encodedWithoutID: encoded, allocator: ByteBufferAllocator()))
            #expect(Array(spliced.readableBytesView) == withID.jsonBytes() + [UInt8(ascii: "\n")])
        }
        #expect(WireCoding.withID(.string("needs \"escaping\""), encodedWithoutID: encoded, allocator: ByteBufferAllocator()) == nil)
    }
}
