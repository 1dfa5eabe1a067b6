import Foundation
import Testing
import TokenExchange

@testable import ExecPlugins

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
        let value = try? JSONDecoder().decode(PluginDocument.DateValue.self, from: Data(json.utf8))
        #expect(value.flatMap(PluginDocument.date)?.timeIntervalSince1970 == seconds)
    }
}

@Suite("Plugin messages echoing credentials")
struct PluginEchoTests {
    @Test("a kind: Error message shows no Basic or Bearer credential and no line separator")
    func credentialsInAMessage() throws {
        let basic = "bGVkZ2VyOnMzY3IzdA=="  // base64("ledger:s3cr3t")
        let answer =
            #"{"apiVersion":"tokenbroker/v1","kind":"Error","message":"sent Authorization: Basic \#(basic)\u2028forged line; bearer abc123XYZ"}"#
        guard case .failure(.reported(let message, _)) = PluginDocument.parseAnswer(Array(answer.utf8), kind: "ExchangeResponse") else {
            Issue.record("not a reported error")
            return
        }
        #expect(!message.contains(basic) && !message.contains("abc123XYZ"), "\(message)")
        #expect(!message.unicodeScalars.contains { $0 == "\u{2028}" || $0.value < 0x20 })
        #expect(message.contains("forged line"))
    }
}
