import NIOCore
import TestRandom
import Testing
import TokenBrokerProtocol

@testable import BrokerServer

/// The scanner is a shortcut: wherever it answers, `JSONDecoder` must answer the same.
@Suite struct RequestScannerTests {
    /// Lines the scanner should take itself, with what they decode to.
    static let plain: [(String, BrokerRequest)] = [
        (
            #"{"op":"token","scope":"https://storage.azure.com/.default","id":7}"#,
            BrokerRequest(op: "token", id: .number(7), scope: "https://storage.azure.com/.default")
        ),
        (#"  { "op" : "ping" , "id" : "a-1" }  "#, BrokerRequest(op: "ping", id: .string("a-1"))),
        ("{\"op\":\"status\"}\r", BrokerRequest(op: "status")),
        (
            #"{"op":"token","resource":"https://vault.azure.net","identity":"web","minValiditySeconds":600,"id":-12}"#,
            BrokerRequest(op: "token", id: .number(-12), resource: "https://vault.azure.net", identity: "web", minValiditySeconds: 600)
        ),
        (#"{"op":"token","scope":null,"identity":null,"id":null,"minValiditySeconds":null}"#, BrokerRequest(op: "token")),
        (#"{"op":"token","extra":true,"more":false,"n":1.5e3,"z":null,"s":"x","scope":"s"}"#, BrokerRequest(op: "token", scope: "s")),
        (#"{"id":999999999999999999,"op":"x"}"#, BrokerRequest(op: "x", id: .number(999_999_999_999_999_999))),
        (#"{"op":""}"#, BrokerRequest(op: "")),
        (
            #"{"op":"token","resource":"https://vault.azure.net","clientId":"c-1","tenantId":"t-1","volume":"azure-identity-token"}"#,
            BrokerRequest(op: "token", resource: "https://vault.azure.net", clientId: "c-1", tenantId: "t-1", volume: "azure-identity-token")
        ),
        (#"{"op":"token","clientId":null,"tenantId":null,"volume":null}"#, BrokerRequest(op: "token")),
    ]

    @Test(arguments: plain.indices)
    func takesTheUsualShapeItself(_ index: Int) throws {
        let (line, expected) = Self.plain[index]
        #expect(scan(line) == expected)
        #expect(try foundation(line).get() == expected)
    }

    /// Lines the scanner must leave to JSONDecoder: every one either is an error, or
    /// needs what the scanner does not do.
    static let declined: [String] = [
        "", "   ", "{", "}", "[]", "null", "\"op\"", #"{"op":"token""#, #"{"op":"token",}"#, #"{"op":"token"} x"#, #"{"op":"token"}{}"#,
        #"{"scope":"s"}"#, #"{"op":7}"#, #"{"op":null}"#, #"{"op":"token","scope":7}"#, #"{"op":"token","scope":true}"#,
        #"{"op":"token","id":true}"#, #"{"op":"token","id":1.0}"#, #"{"op":"token","id":-0}"#, #"{"op":"token","id":01}"#,
        #"{"op":"token","id":12345678901234567890}"#, #"{"op":"token","id":1234567890123456789}"#, #"{"op":"token","id":-}"#,
        #"{"op":"token","minValiditySeconds":"600"}"#, #"{"op":"token","minValiditySeconds":1e2}"#,
        #"{"op":"tok\u0065n"}"#, #"{"op":"token","scope":"a\"b"}"#, "{\"op\":\"tøken\"}", "{\"op\":\"to\u{01}ken\"}",
        #"{"op":"token","op":"ping"}"#, #"{"op":"token","scope":"a","scope":"b"}"#, #"{"op":"token","clientId":"a","clientId":"b"}"#,
        #"{"op":"token","volume":1}"#, #"{"op":"token","x":{"y":1}}"#, #"{"op":"token","x":[1]}"#,
        #"{"op":"token","x":nul}"#, #"{"op":"token","x":tru}"#, #"{"op":"token","x":1.}"#, #"{"op":"token","x":1e}"#, #"{"op" "token"}"#,
        #"{op:"token"}"#, #"{"op":'token'}"#,
    ]

    @Test(arguments: declined)
    func leavesTheRestToJSONDecoder(_ line: String) {
        #expect(scan(line) == nil)
    }

    /// Many generated variations: where the scanner answers, it answers as JSONDecoder does.
    @Test("the eight-bytes-at-a-time test finds a special byte exactly where a byte-by-byte look does")
    func wordTestAgreesWithBytes() {
        func special(_ byte: UInt8) -> Bool { byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 || byte >= 0x80 }
        var generator = SeededRandom()
        // Every byte value in every position among plain neighbours, then random words.
        var words: [UInt64] = []
        for position in 0..<8 {
            for byte in 0...UInt64(255) { words.append((0x6161_6161_6161_6161 & ~(0xFF << (8 * position))) | byte << (8 * position)) }
        }
        for _ in 0..<100_000 { words.append(UInt64.random(in: 0...UInt64.max, using: &generator)) }
        for word in words {
            let bytes = (0..<8).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) }
            #expect(RequestScanner.holdsSpecialByte(word) == bytes.contains(where: special), "\(String(word, radix: 16))")
        }
    }

    @Test func agreesWithJSONDecoderOnGeneratedLines() {
        let keys = [
            #""op""#, #""id""#, #""scope""#, #""resource""#, #""identity""#, #""minValiditySeconds""#, #""clientId""#, #""tenantId""#, #""volume""#,
            #""other""#,
        ]
        let values = [
            #""token""#, #""ping""#, "7", "-3", "0", "1.5", "2e3", "null", "true", "false", #""""#, #""a/b:c""#, #""\u0041""#, "[]", "{}", "01",
            "9223372036854775807", "-9223372036854775808", "99999999999999999999",
        ]
        var generator = SystemRandomNumberGenerator()
        var answered = 0
        for _ in 0..<20_000 {
            let fields = (0..<Int.random(in: 0...5, using: &generator)).map { _ in
                let space = Bool.random(using: &generator) ? " " : ""
                return keys.randomElement(using: &generator)! + space + ":" + space + values.randomElement(using: &generator)!
            }
            let line = "{" + fields.joined(separator: ",") + "}"
            guard let scanned = scan(line) else { continue }
            answered += 1
            #expect((try? foundation(line).get()) == scanned, "\(line)")
        }
        #expect(answered > 100)
    }

    private func scan(_ line: String) -> BrokerRequest? {
        ByteBuffer(string: line).withUnsafeReadableBytes(RequestScanner.scan)
    }

    private func foundation(_ line: String) -> Result<BrokerRequest, WireCoding.DecodeFailure> {
        WireCoding.decodeWithFoundation(ByteBuffer(string: line))
    }
}
