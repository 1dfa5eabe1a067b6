import Foundation
import Testing

@testable import TokenExchange

/// Token services that echo what they were sent — the client assertion, the client secret,
/// a `Basic` header — in any field of an error, and fields that are huge or carry line
/// breaks. Whatever a parser hands on (the message, `upstream.*`, a token type) must
/// carry none of it.
enum Echo {
    static let assertion = Fixtures.assertion()
    static let clientSecret = "s3cr3t-Value_with+plus/and=equals"
    static let rfc8693 = try! RFC8693Configuration(
        tokenEndpoint: RFC8693Fixtures.endpoint, audience: "urn:example:payments", clientId: "ledger-client", clientSecret: clientSecret)
    /// What `Authorization: Basic …` carried.
    static let basicCredentials = Data("ledger-client:\(FormEncoding.escape(clientSecret))".utf8).base64EncodedString()
    static let opaqueBearer = "2YotnFZFEjr1zCsicMWpAA"

    /// JSON string contents of a 200 KB trace id.
    static let hugeId = String(repeating: "0123456789abcdef", count: 200_000 / 16)

    /// Every field a caller or a log can see.
    static func fields(_ error: TokenExchangeError) -> [String] {
        [error.message, error.description] + [error.upstream?.error, error.upstream?.traceId, error.upstream?.correlationId].compactMap { $0 }
    }

    /// Whether `text` shows any 12-character piece of `secret`.
    static func exposes(_ text: String, _ secret: String) -> Bool {
        let scalars = Array(secret)
        guard scalars.count >= 12 else { return text.contains(secret) }
        return stride(from: 0, through: scalars.count - 12, by: 6).contains { text.contains(String(scalars[$0..<($0 + 12)])) }
    }

    static func expectClean(_ error: TokenExchangeError?, secrets: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        guard let error else {
            Issue.record("no error", sourceLocation: sourceLocation)
            return
        }
        for field in fields(error) {
            for secret in secrets {
                #expect(!exposes(field, secret), "a field shows a secret: \(field.prefix(200))", sourceLocation: sourceLocation)
            }
            #expect(
                !field.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0 == "\u{2028}" || $0 == "\u{2029}" },
                "a field has a control character", sourceLocation: sourceLocation)
        }
        #expect(error.message.count <= 1200, sourceLocation: sourceLocation)
        for id in [error.upstream?.traceId, error.upstream?.correlationId].compactMap({ $0 }) {
            #expect(id.count <= 128, "an identifier of \(id.count) characters", sourceLocation: sourceLocation)
        }
        #expect((error.upstream?.error?.count ?? 0) <= 128, sourceLocation: sourceLocation)
    }
}

@Suite struct EchoedSecretsInEntraErrors {
    private func failure(_ body: String, status: Int = 400) -> TokenExchangeError? {
        #expect(throws: TokenExchangeError.self) {
            try EntraTokenResponse.parse(
                Fixtures.response(status, body), configuration: Fixtures.configuration, scope: Fixtures.scope, assertion: Echo.assertion,
                now: Fixtures.now)
        }
    }

    @Test(arguments: [400, 401, 500])
    func theAssertionEchoedInEveryFieldReachesNoField(status: Int) {
        let jwt = Echo.assertion.jwt
        let body = """
            {"error":"\(jwt)","error_description":"AADSTS50027: Invalid JWT token \(jwt). Authorization: Bearer \(Echo.opaqueBearer)",\
            "error_codes":[50027],"trace_id":"\(jwt)","correlation_id":"x \(jwt)"}
            """
        Echo.expectClean(failure(body, status: status), secrets: [jwt, Echo.opaqueBearer])
    }

    @Test func aHugeTraceIdIsNotRelayed() {
        let error = failure(#"{"error":"invalid_client","error_codes":[70021],"trace_id":"\#(Echo.hugeId)","correlation_id":"\#(Echo.hugeId)"}"#)
        Echo.expectClean(error, secrets: [])
    }

    @Test func lineBreaksInIdentifiersCannotForgeLogLines() {
        let forged = #"9b3e0a51\r\n2026-11-29T01:02:03Z info tokenbroker: token granted\u2028\u0085x"#
        let error = failure(
            #"{"error":"invalid\nclient","error_description":"a\u2029b\u001b[31m","error_codes":[70021],"trace_id":"\#(forged)","correlation_id":"\#(forged)"}"#
        )
        Echo.expectClean(error, secrets: [])
    }

    @Test func ordinaryIdentifiersSurvive() {
        let error = failure(Fixtures.noMatchingFederatedIdentity)
        #expect(error?.upstream?.traceId == Fixtures.traceId)
        #expect(error?.upstream?.correlationId == Fixtures.correlationId)
        #expect(error?.upstream?.error == "invalid_client")
    }
}

@Suite struct EchoedSecretsInAWSErrors {
    private func failure(_ body: String, status: Int = 400, requestIdHeader: String? = nil) -> TokenExchangeError? {
        var headers = [HeaderField("Content-Type", "text/xml")]
        if let requestIdHeader { headers.append(HeaderField("x-amzn-RequestId", requestIdHeader)) }
        return #expect(throws: TokenExchangeError.self) {
            try AWSSTSTokenResponse.parse(
                UpstreamResponse(status: status, headers: headers, body: Array(body.utf8)),
                configuration: AWSFixtures.configuration, assertion: Echo.assertion, now: AWSBodies.motoReceivedAt)
        }
    }

    @Test(arguments: [400, 403, 503])
    func theAssertionEchoedInCodeMessageAndRequestIdReachesNoField(status: Int) {
        let jwt = Echo.assertion.jwt
        let body = """
            <ErrorResponse><Error><Type>Sender</Type><Code>\(jwt)</Code><Message>token \(jwt) rejected; basic \(Echo.basicCredentials)</Message></Error>\
            <RequestId>\(jwt)</RequestId></ErrorResponse>
            """
        Echo.expectClean(failure(body, status: status), secrets: [jwt, Echo.basicCredentials])
    }

    @Test func anEchoInTheRequestIdHeaderOfA200IsNotRelayed() {
        let jwt = Echo.assertion.jwt
        let error = #expect(throws: TokenExchangeError.self) {
            try AWSSTSTokenResponse.parse(
                UpstreamResponse(status: 200, headers: [HeaderField("x-amzn-RequestId", jwt)], body: Array("<Other/>".utf8)),
                configuration: AWSFixtures.configuration, assertion: Echo.assertion, now: AWSBodies.motoReceivedAt)
        }
        Echo.expectClean(error, secrets: [jwt])
    }
}

@Suite struct EchoedSecretsInRFC8693Errors {
    private func failure(_ body: String, status: Int = 400, requestId: String? = nil) -> TokenExchangeError? {
        var headers = [HeaderField("Content-Type", "application/json")]
        if let requestId { headers.append(HeaderField("X-Request-Id", requestId)) }
        return #expect(throws: TokenExchangeError.self) {
            try RFC8693TokenResponse.parse(
                UpstreamResponse(status: status, headers: headers, body: Array(body.utf8)),
                configuration: Echo.rfc8693, scope: RFC8693Fixtures.scope, assertion: Echo.assertion, now: Fixtures.now)
        }
    }

    @Test(arguments: [400, 401, 502])
    func anEchoedBasicHeaderAndSecretReachNoField(status: Int) {
        let body = """
            {"error":"invalid_client","error_description":"client auth failed for header 'authorization: basic \(Echo.basicCredentials)' \
            (secret \(Echo.clientSecret)); BEARER \(Echo.opaqueBearer)"}
            """
        Echo.expectClean(
            failure(body, status: status, requestId: Echo.basicCredentials),
            secrets: [Echo.basicCredentials, Echo.clientSecret, Echo.opaqueBearer])
    }

    @Test func aHugeRequestIdIsNotRelayed() {
        Echo.expectClean(failure(#"{"error":"invalid_grant"}"#, requestId: Echo.hugeId + "\r\nforged: line"), secrets: [])
    }
}
