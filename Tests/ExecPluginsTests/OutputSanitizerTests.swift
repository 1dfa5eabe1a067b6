import Foundation
import Testing

@testable import ExecPlugins

@Suite("Sanitizing plugin output for messages")
struct OutputSanitizerTests {
    @Test(
        "removes control characters and escapes, redacts token-like runs",
        arguments: [
            ("plain message", "plain message"),
            ("line one\nline two\r\n\tindented", "line one line two indented"),
            ("\u{1B}[1;31mred\u{1B}[0m text", "red text"),
            ("nul\u{0}byte and bidi\u{202E}override", "nul byte and bidi override"),
            ("Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln done", "Bearer [redacted] done"),
            ("secret=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCd+/==", "secret=[redacted]"),
            ("path /usr/local/lib/tokenbroker/plugins/gcloud-identity-token-helper ok", "path /usr/local/lib/tokenbroker/plugins/gcloud-identity-token-helper ok"),
            ("trace 9b3e0a51-2f7c-4d8e-a1b2-7c6d5e4f3a00 ok", "trace 9b3e0a51-2f7c-4d8e-a1b2-7c6d5e4f3a00 ok"),
        ])
    func cleans(input: String, expected: String) {
        #expect(OutputSanitizer.clean(input) == expected)
    }

    @Test("keeps the end of a long stderr and the start of a long message")
    func truncates() {
        let text = (0..<200).map { "w\($0)" }.joined(separator: " ")
        let tail = OutputSanitizer.clean(Array(text.utf8), limit: 20, keep: .end)
        #expect(tail.hasPrefix("…") && tail.hasSuffix("w199"))
        #expect(tail.count == 21)
        let head = OutputSanitizer.clean(text, limit: 20, keep: .start)
        #expect(head.hasPrefix("w0 w1") && head.hasSuffix("…"))
    }

    @Test("invalid UTF-8 does not break it")
    func invalidUTF8() {
        #expect(OutputSanitizer.clean([0x66, 0x6F, 0xFF, 0x6F]) == "fo\u{FFFD}o")
    }
}

@Suite("Reading plugin answers")
struct PluginDocumentTests {
    @Test(
        "expiresAt: RFC 3339 or Unix seconds",
        arguments: [
            (#""2026-11-29T01:02:03Z""#, 1_795_914_123.0 as Double?),
            (#""2026-11-29T02:02:03+01:00""#, 1_795_914_123),
            (#""2026-11-29T01:02:03.5Z""#, 1_795_914_123.5),
            ("1795914123", 1_795_914_123),
            (#""1795914123""#, 1_795_914_123),
            (#""2026-11-29""#, nil),
            ("true", nil),
            ("-5", nil),
        ])
    func dates(json: String, seconds: Double?) throws {
        let value = try JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed)
        #expect(PluginDocument.date(value)?.timeIntervalSince1970 == seconds)
    }
}
