import ExecPlugins
import Foundation
import Testing
import TokenExchange

@Suite("An exec exchange")
struct ExecExchangerTests {
    @Test(
        "returns the token the plugin printed, expiresAt as RFC 3339 or Unix seconds",
        arguments: [#""2100-01-01T00:00:00Z""#, #""2100-01-01T00:00:00.250Z""#, "4102444800", #""4102444800""#])
    func returnsTheToken(expiresAt: String) async throws {
        let configuration = Plugins.configuration(
            "exchange-good.sh", environment: ["PLUGIN_TOKEN": "tok-123", "PLUGIN_TOKEN_TYPE": "PoP", "PLUGIN_EXPIRES_AT": expiresAt])
        let token = try await Plugins.exchanger(configuration).exchange(Plugins.assertion(), for: Plugins.scope)
        #expect(token.value == "tok-123")
        #expect(token.tokenType == "PoP")
        #expect(Int(token.expiresAt.timeIntervalSince1970) == 4_102_444_800)
    }

    @Test("writes exactly one ExchangeRequest line with the assertion and the scope")
    func sendsTheExactRequest() async throws {
        let jwt = Plugins.jwt()
        let token = try await Plugins.exchanger(Plugins.configuration("echo-stdin.sh")).exchange(Plugins.assertion(jwt), for: Plugins.scope)
        let request = String(decoding: try #require(Data(base64Encoded: token.value)), as: UTF8.self)
        #expect(
            request == #"{"apiVersion":"tokenbroker/v1","assertion":"\#(jwt)","kind":"ExchangeRequest","scope":"https://storage.azure.com/.default"}"#
                + "\n")
    }

    @Test("tokenType defaults to Bearer and unknown fields are ignored")
    func tokenTypeDefault() async throws {
        let answer = #"{"apiVersion":"tokenbroker/v1","kind":"ExchangeResponse","token":"t","expiresAt":4102444800,"extra":[1,2]}"#
        let token = try await Plugins.exchanger(Plugins.configuration("answer.sh", environment: ["PLUGIN_ANSWER": answer]))
            .exchange(Plugins.assertion(), for: Plugins.scope)
        #expect(token.tokenType == "Bearer")
        #expect(token.value == "t")
    }

    @Test("expiresAt is required, and must be in the future")
    func requiresExpiry() async throws {
        for answer in [
            #"{"apiVersion":"tokenbroker/v1","kind":"ExchangeResponse","token":"secret-token-value"}"#,
            #"{"apiVersion":"tokenbroker/v1","kind":"ExchangeResponse","token":"secret-token-value","expiresAt":1000000000}"#,
        ] {
            let error = try #require(
                await Plugins.error {
                    try await Plugins.exchanger(Plugins.configuration("answer.sh", environment: ["PLUGIN_ANSWER": answer]))
                        .exchange(Plugins.assertion(), for: Plugins.scope)
                })
            #expect(error.code == .upstreamUnavailable)
            #expect(error.message.contains("expire"))
            #expect(!error.message.contains("secret-token-value"))
        }
    }

    @Test(
        "a plugin's Error answer: retryable false is upstream_rejected, true is upstream_unavailable",
        arguments: [("false", TokenExchangeError.Code.upstreamRejected, false), ("true", .upstreamUnavailable, true)])
    func reportedError(retryable: String, code: TokenExchangeError.Code, isRetryable: Bool) async throws {
        let configuration = Plugins.configuration(
            "error-answer.sh", environment: ["PLUGIN_MESSAGE": "role arn:aws:iam::123:role/x may not be assumed", "PLUGIN_RETRYABLE": retryable])
        let error = try #require(
            await Plugins.error {
                try await Plugins.exchanger(configuration, name: "aws").exchange(Plugins.assertion(), for: Plugins.scope)
            })
        #expect(error.code == code)
        #expect(error.isRetryable == isRetryable)
        #expect(error.message.contains("exec plugin 'aws' (\(Plugins.path("error-answer.sh")))"))
        #expect(error.message.contains("role arn:aws:iam::123:role/x may not be assumed"))
    }

    @Test("the assertion never appears in an error message")
    func assertionNotInErrors() async throws {
        let jwt = Plugins.jwt()
        let error = try #require(
            await Plugins.error {
                try await Plugins.exchanger(Plugins.configuration("garbage.sh")).exchange(Plugins.assertion(jwt), for: Plugins.scope)
            })
        #expect(!error.message.contains(jwt))
        #expect(!error.message.contains("eyJ"))
    }
}
