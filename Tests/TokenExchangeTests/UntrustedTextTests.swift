import Foundation
import Testing

@testable import TokenExchange

@Suite("The one sanitizer of outside text")
struct UntrustedTextTests {
    @Test(
        "removes control characters and escapes, redacts credential-like runs",
        arguments: [
            ("plain message", "plain message"),
            ("line one\nline two\r\n\tindented", "line one line two indented"),
            ("\u{1B}[1;31mred\u{1B}[0m text", "red text"),
            ("nul\u{0}byte and bidi\u{202E}override", "nul byte and bidi override"),
            ("para\u{2029}line\u{2028}next\u{85}c1", "para line next c1"),
            ("Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln done", "Bearer [redacted] done"),
            ("secret=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCd+/==", "secret=[redacted]"),
            ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [redacted]"),
            ("authorization: BASIC YTpi=, next", "authorization: BASIC [redacted], next"),
            ("header bearer 2YotnFZFEjr1zCsicMWpAA.", "header bearer [redacted]"),
            ("basic: not a credential", "basic: not a credential"),
            (
                "path /usr/local/lib/tokenbroker/plugins/gcloud-identity-token-helper ok",
                "path /usr/local/lib/tokenbroker/plugins/gcloud-identity-token-helper ok"
            ),
            ("trace 9b3e0a51-2f7c-4d8e-a1b2-7c6d5e4f3a00 ok", "trace 9b3e0a51-2f7c-4d8e-a1b2-7c6d5e4f3a00 ok"),
            (
                "see https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
                "see https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
            ),
        ])
    func cleans(input: String, expected: String) {
        #expect(UntrustedText.sanitize(input) == expected)
    }

    @Test func redactsTheSecretsItIsGiven() {
        let text = "client secret s3cr3t-value, encoded s3cr3t%2Dvalue, short ab"
        #expect(
            UntrustedText.sanitize(text, redacting: ["s3cr3t-value", "s3cr3t%2Dvalue", "ab"])
                == "client secret [redacted], encoded [redacted], short ab")
    }

    @Test func aSecretContainingAnotherGoesWhole() {
        #expect(UntrustedText.sanitize("x abcdefgh12345678 y", redacting: ["abcdefgh", "abcdefgh12345678"]) == "x [redacted] y")
    }

    @Test("keeps the end of a long stderr and the start of a long message")
    func truncates() {
        let text = (0..<200).map { "w\($0)" }.joined(separator: " ")
        let tail = UntrustedText.sanitize(Array(text.utf8), limit: 20, keep: .end)
        #expect(tail.hasPrefix("…") && tail.hasSuffix("w199"))
        #expect(tail.count <= 21)
        let head = UntrustedText.sanitize(text, limit: 20, keep: .start)
        #expect(head.hasPrefix("w0 w1") && head.hasSuffix("…"))
        #expect(head.count <= 21)
    }

    @Test("a long message is cut between words, with nothing dangling before the ellipsis")
    func cutsAtAWordBoundary() {
        let text = "No matching federated identity record found for presented assertion. Please check your configuration"
        let head = UntrustedText.sanitize(text, limit: 72)
        #expect(head == "No matching federated identity record found for presented assertion.…", "\(head)")
        let tail = UntrustedText.sanitize(Array(text.utf8), limit: 30, keep: .end)
        #expect(tail == "…check your configuration", "\(tail)")
        // One word longer than the limit is still cut inside it: nothing else to keep.
        #expect(UntrustedText.sanitize(String(repeating: "x", count: 50) + " y", limit: 20) == String(repeating: "x", count: 20) + "…")
    }

    @Test("hints and upstream text join with one full stop each")
    func sentencesJoinWithOneFullStop() {
        #expect(TokenExchangeError.sentences("a hint.", "Upstream said: it failed") == "a hint. Upstream said: it failed.")
        #expect(TokenExchangeError.sentences("a hint", nil, "cut short…") == "a hint. cut short…")
    }

    @Test func aSecretBeyondTheCutIsNotHalfShown() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
        let text = String(repeating: "a ", count: 145) + jwt
        let cut = UntrustedText.sanitize(text, limit: 300)
        #expect(!cut.contains("eyJhbG"))
    }

    @Test("invalid UTF-8 does not break it")
    func invalidUTF8() {
        #expect(UntrustedText.sanitize([0x66, 0x6F, 0xFF, 0x6F]) == "fo\u{FFFD}o")
    }

    @Test(
        "identifiers: kept when they look like one, else dropped",
        arguments: [
            ("9b3e0a51-2f7c-4d8e-a1b2-7c6d5e4f3a00", "9b3e0a51-2f7c-4d8e-a1b2-7c6d5e4f3a00" as String?),
            ("  uAQJcJcTyH4E0reGNgUu62xAEcC7pq2Ruyycb288l1R7mOmADCBR ", "uAQJcJcTyH4E0reGNgUu62xAEcC7pq2Ruyycb288l1R7mOmADCBR"),
            ("ValidationError", "ValidationError"),
            ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", nil),
            ("abc\r\ninfo forged", nil),
            ("abc def", nil),
            ("abc<script>", nil),
            ("", nil),
            (String(repeating: "a", count: 129), nil),
        ])
    func identifiers(input: String, expected: String?) {
        #expect(UntrustedText.identifier(input) == expected)
    }

    @Test func anIdentifierThatIsASecretIsDropped() {
        #expect(UntrustedText.identifier("s3cr3t-value", redacting: ["s3cr3t-value"]) == nil)
    }

    /// Echoed so often that the cut falls inside an occurrence, and replacing the ones before
    /// it shrinks the text far below the limit: no part of the secret is kept.
    @Test(arguments: [37, 50, 301, 1200, 1201, 1249])
    func theCutNeverKeepsPartOfASecret(length: Int) {
        let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        let secret = String((0..<length).map { alphabet[$0 % 32] })
        for separator in ["", " ", "x"] {
            let text = Array(repeating: secret, count: 40).joined(separator: separator)
            let sanitized = UntrustedText.sanitize(text, redacting: [secret])
            for start in stride(from: 0, to: length - 8, by: 7) {
                let piece = String(Array(secret)[start..<(start + 8)])
                #expect(!sanitized.contains(piece), "a piece of the secret survived (length \(length), separator '\(separator)')")
            }
        }
    }

    /// A 200 KB field (a hostile token service's trace id) is cut, and only its start is
    /// read (how long that takes is a benchmark's business, not a test's).
    @Test func aHugeFieldIsCut() {
        let secret = "s3cr3t-value-echoed"
        let huge = secret + " " + String(repeating: "0123456789abcdef ", count: 200_000 / 17)
        let sanitized = UntrustedText.sanitize(huge, redacting: [secret])
        #expect(sanitized.count <= 301)
        #expect(sanitized.hasPrefix("[redacted]") && !sanitized.contains(secret))
        #expect(UntrustedText.identifier(String(repeating: "a", count: 200_000)) == nil)
    }

}
