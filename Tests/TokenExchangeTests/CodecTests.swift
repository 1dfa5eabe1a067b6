import Foundation
import Testing
import TokenExchange

/// The one base64url codec and the one percent-decoder, in the modes their users need.
@Suite struct SharedCodecs {
    @Test(arguments: [("YQ", "a"), ("YWI", "ab"), ("YWJj", "abc"), ("-_8", "\u{FB}\u{FF}")])
    func base64URLReadsUnpaddedText(text: String, expected: String) {
        let bytes = Array(expected.unicodeScalars.map { UInt8($0.value) })
        #expect(Base64URL.decode(text).map(Array.init) == bytes)
        #expect(Base64URL.decode(text, padding: .forbidden).map(Array.init) == bytes)
        #expect(Base64URL.encode(bytes) == text)
    }

    // The broker takes a padded assertion; the dev provider, strict like Entra, does not.
    @Test func paddingIsOptionalUnlessForbidden() {
        #expect(Base64URL.decode("YQ==").map(Array.init) == [0x61])
        #expect(Base64URL.decode("YQ==", padding: .forbidden) == nil)
        #expect(Base64URL.decode("Y=Q") == nil)
        #expect(Base64URL.decode("YQ=").map(Array.init) == [0x61])
        #expect(Base64URL.decode("Y") == nil)
    }

    @Test(
        arguments: [
            ("%41%2f%2F", true, PercentDecoding.Malformed.keptLiterally, "A//"),
            ("a+b", true, .keptLiterally, "a b"),
            ("a+b", false, .refused, "a+b"),
            ("%zz%4", true, .keptLiterally, "%zz%4"),
            // Only two hex digits make an escape (a sign is not a digit, as `UInt8(_:radix:)` took it).
            ("%+f%-0", true, .keptLiterally, "% f%-0"),
        ] as [(String, Bool, PercentDecoding.Malformed, String)])
    func percentDecoding(text: String, plusIsSpace: Bool, malformed: PercentDecoding.Malformed, expected: String) {
        #expect(
            PercentDecoding.decode(Array(text.utf8), plusIsSpace: plusIsSpace, malformed: malformed).map { String(decoding: $0, as: UTF8.self) }
                == expected)
    }

    @Test(arguments: ["%zz", "%4", "a%", "%g0"])
    func aMalformedEscapeIsRefusedWhereAskedTo(text: String) {
        #expect(PercentDecoding.decode(Array(text.utf8), plusIsSpace: false, malformed: .refused) == nil)
    }
}
