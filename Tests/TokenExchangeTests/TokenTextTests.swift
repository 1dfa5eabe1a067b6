import Foundation
import TestRandom
import Testing

@testable import TokenExchange

/// `AccessToken` keeps a JWT as the bytes its segments encode; what callers get back must be
/// the token as issued, byte for byte, whatever the token looks like.
@Suite struct TokenTextTests {
    @Test(
        "a JWT is kept as bytes and given back exactly",
        arguments: [
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",  // the three remainders: 0, 2 and 3 characters over a group
            "YQ.YWI.YWJj", "..", "YQ.Yg.Yw", "-_8.AAAA.____",
        ])
    func jwtsRoundTrip(token: String) {
        let text = TokenText(token)
        #expect(text.isDecoded, "\(token)")
        #expect(text.string == token && text.utf8Count == token.utf8.count)
    }

    @Test(
        "anything else is kept as it came: not three segments, padding, the other alphabet, bits an encoder would not set",
        arguments: [
            "", "opaque-token", "a.b", "a.b.c.d.e", "YQ==.YQ.YQ", "YQ.YQ.Y", "ab+/.YQ.YQ", "YR.YQ.YQ", "YWL.YQ.YQ", "YQ.YQ.YQ\n", "ünï.YQ.YQ",
            "FwoGZXIvYXdzEJr//////////wEaDH7yK+4=",
        ])
    func othersAreKeptAsText(token: String) {
        let text = TokenText(token)
        #expect(!text.isDecoded, "\(token)")
        #expect(text.string == token && text.utf8Count == token.utf8.count)
    }

    @Test("random tokens, JWT-shaped or nearly, come back exactly")
    func randomTokensRoundTrip() {
        var random = SeededRandom()
        let characters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        let strays = Array("=+/. %\n".utf8)
        var decoded = 0
        for _ in 0..<3000 {
            var bytes: [UInt8] = []
            let encoded = Bool.random(using: &random)  // segments an encoder wrote, or any characters of the alphabet
            for segment in 0..<3 {
                if segment > 0 { bytes.append(UInt8(ascii: ".")) }
                let count = Int.random(in: 0...40, using: &random)
                if encoded {
                    bytes += Base64URL.encode((0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }).utf8
                } else {
                    for _ in 0..<count { bytes.append(characters.randomElement(using: &random)!) }
                }
            }
            if Int.random(in: 0..<8, using: &random) == 0 {
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = strays.randomElement(using: &random)!
            }
            let token = String(decoding: bytes, as: UTF8.self)
            let text = TokenText(token)
            if text.isDecoded { decoded += 1 }
            #expect(text.string == token && text.utf8Count == token.utf8.count, "\(token) (\(random))")
        }
        #expect(decoded > 1000, "those an encoder wrote are kept decoded, stray characters aside (\(random))")
    }

    @Test("the byte encoder writes what Foundation's base64 does, made url-safe and unpadded")
    func encoderMatchesFoundation() {
        var random = SeededRandom()
        for count in 0..<200 {
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
            let expected = Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
            #expect(Base64URL.encode(bytes) == expected, "\(count) bytes (\(random))")
        }
    }

    @Test("an access token reads back its value and says only its length")
    func accessTokenValue() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
        let token = AccessToken(value: jwt, issuedAt: Date(), expiresAt: Date().addingTimeInterval(60))
        #expect(token.value == jwt && token.text.isDecoded)
        #expect(token.description.contains("length: \(jwt.utf8.count)") && !token.description.contains(jwt))
    }
}
