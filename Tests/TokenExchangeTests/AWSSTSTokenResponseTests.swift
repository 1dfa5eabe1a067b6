import Foundation
import Testing
import TokenExchange

private func xml(_ status: Int, _ body: String, headers: [HeaderField] = [HeaderField("Content-Type", "text/xml")]) -> UpstreamResponse {
    UpstreamResponse(status: status, headers: headers, body: Array(body.utf8))
}

private func parse(
    _ response: UpstreamResponse, assertion: Assertion = Fixtures.assertion(), now: Date = AWSBodies.motoReceivedAt
) throws(TokenExchangeError) -> AccessToken {
    try AWSSTSTokenResponse.parse(response, configuration: AWSFixtures.configuration, assertion: assertion, now: now)
}

private func failure(
    _ response: UpstreamResponse, assertion: Assertion = Fixtures.assertion(), now: Date = AWSBodies.motoReceivedAt
) -> TokenExchangeError? {
    let error = #expect(throws: TokenExchangeError.self) { try parse(response, assertion: assertion, now: now) }
    if let error {
        #expect(!error.message.contains(assertion.jwt))
        #expect(!error.message.contains(assertion.jwt.split(separator: ".")[1]))
    }
    return error
}

@Suite struct AWSSTSSuccessParsing {
    @Test func motoSuccessGivesCredentialsCarriedByAnAccessToken() throws {
        let token = try parse(xml(200, AWSBodies.motoSuccess))
        let credentials = try #require(token.awsCredentials)
        #expect(credentials.accessKeyId == "ASIARZPUZDIKBVEYK5UV")
        #expect(credentials.secretAccessKey == "rdf4CscACn5rDniLws9MBYKHmlOZp1wiTupuzirX")
        #expect(credentials.sessionToken.hasPrefix("FQoGZXIvYXdzEBYaD9wf6jwRnQH3LT//hX+toYrV"))
        #expect(credentials.sessionToken.hasSuffix("iKoNjinD5Vw="))
        #expect(credentials.accountId == "123456789012")
        // 2026-11-29T05:19:41.034240Z
        #expect(abs(credentials.expiration.timeIntervalSince1970 - 1_795_929_581.034240) < 0.000_01)
        #expect(token.value == credentials.sessionToken)
        #expect(token.tokenType == "AWS4-HMAC-SHA256")
        #expect(token.tokenType == AWSCredentials.tokenType)
        #expect(token.issuedAt == AWSBodies.motoReceivedAt)
        #expect(token.expiresAt == credentials.expiration)
        #expect(token.refreshAt == nil && token.extendedExpiresAt == nil)
        #expect(!"\(token)".contains(credentials.sessionToken) && !"\(credentials)".contains(credentials.secretAccessKey))
    }

    @Test func documentedShapeWithDeclarationIndentationAndEntitiesParses() throws {
        let token = try parse(xml(200, AWSBodies.awsDocumentedSuccess))
        let credentials = try #require(token.awsCredentials)
        #expect(credentials.accessKeyId == "ASgeIAIOSFODNN7EXAMPLE")
        #expect(credentials.sessionToken == "AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE&more")
        #expect(credentials.expiration == Date(timeIntervalSince1970: 1_795_929_581))
        #expect(credentials.accountId == "210987654321")
    }

    @Test(arguments: [
        ("2026-11-29T05:19:41Z", 1_795_929_581.0),
        ("2026-11-29T05:19:41.5Z", 1_795_929_581.5),
        ("2026-11-29T05:19:41.034240Z", 1_795_929_581.034240),
        ("2026-11-29T06:19:41+01:00", 1_795_929_581.0),
        ("2026-11-29T00:19:41-05:00", 1_795_929_581.0),
        ("2026-11-29t05:19:41z", 1_795_929_581.0),
    ])
    func expirationFormats(text: String, seconds: Double) throws {
        let body = AWSBodies.awsDocumentedSuccess.replacingOccurrences(of: "2026-11-29T05:19:41Z", with: text)
        let token = try parse(xml(200, body))
        #expect(abs(token.expiresAt.timeIntervalSince1970 - seconds) < 0.000_01)
    }

    @Test func namespacePrefixesCDATAAndCommentsAreTolerated() throws {
        let body = """
            <?xml version="1.0"?><!-- from a proxy -->
            <sts:AssumeRoleWithWebIdentityResponse xmlns:sts="https://sts.amazonaws.com/doc/2011-06-15/">
            <sts:AssumeRoleWithWebIdentityResult><sts:Credentials>
            <sts:AccessKeyId>ASIAEXAMPLE</sts:AccessKeyId><sts:SecretAccessKey><![CDATA[se<cr>et]]></sts:SecretAccessKey>
            <sts:SessionToken>to&#107;en&#x21;</sts:SessionToken><sts:Expiration>2026-11-29T05:19:41Z</sts:Expiration>
            <sts:Unknown attr='x > y'/></sts:Credentials></sts:AssumeRoleWithWebIdentityResult></sts:AssumeRoleWithWebIdentityResponse>
            """
        let credentials = try #require(try parse(xml(200, body)).awsCredentials)
        #expect(credentials.secretAccessKey == "se<cr>et")
        #expect(credentials.sessionToken == "token!")
        #expect(credentials.accountId == nil)
    }

    @Test(arguments: ["AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"])
    func missingCredentialFieldIsNamed(field: String) {
        let body = AWSBodies.motoSuccess.replacingOccurrences(
            of: #"<\#(field)>[^<]*</\#(field)>"#, with: "", options: .regularExpression)
        let error = failure(xml(200, body))
        #expect(error?.code == .upstreamUnavailable)
        #expect(error?.isRetryable == true)
        #expect(error?.message == "AWS STS answered 200 without Credentials/\(field)")
        #expect(error?.upstream?.traceId == "gF0B8rehiIZXU8THHXHCnY5S2X1wObQTAhAmJG8TwQ3Bzs3uka7T")
    }

    @Test(arguments: [
        ("", "not XML"), ("{\"Credentials\":{}}", "not XML"), ("<html><body>OK</body></html>", "'html' document"),
        ("<AssumeRoleWithWebIdentityResponse>", "not XML"), ("<a><b></a></b>", "not XML"),
        ("<!DOCTYPE x [<!ENTITY a \"aaaa\">]><AssumeRoleWithWebIdentityResponse/>", "not XML"),
        (
            "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>&bogus;</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
            "not XML"
        ),
        ("<AssumeRoleWithWebIdentityResponse/><Second/>", "not XML"),
        (String(repeating: "<a>", count: 100) + String(repeating: "</a>", count: 100), "not XML"),
    ])
    func garbageIsRetryableUnavailable(body: String, reason: String) {
        let error = failure(xml(200, body))
        #expect(error?.code == .upstreamUnavailable)
        #expect(error?.isRetryable == true)
        #expect(error?.message.contains(reason) == true, "\(error?.message ?? "")")
    }

    @Test(arguments: [
        ("not-a-time", "not an ISO 8601 time"), ("2026-11-29", "not an ISO 8601 time"), ("2026-13-01T00:00:00Z", "not an ISO 8601 time"),
        ("2026-11-29T04:19:40Z", "expired at 2026-11-29T04:19:40Z, 1 s before they arrived"),
        ("2027-12-01T00:00:00Z", "more than a year away"),
    ])
    func implausibleExpirationIsRefused(expiration: String, reason: String) {
        let body = AWSBodies.awsDocumentedSuccess.replacingOccurrences(of: "2026-11-29T05:19:41Z", with: expiration)
        let error = failure(xml(200, body))
        #expect(error?.code == .upstreamUnavailable)
        #expect(error?.message.contains(reason) == true, "\(error?.message ?? "")")
    }
}

@Suite struct AWSSTSErrorMapping {
    static let assertion: Assertion = {
        let payload =
            #"{"iss":"https://oidc.example.com/cluster-1","sub":"system:serviceaccount:payments:ledger-writer","aud":"sts.amazonaws.com","exp":1795929000,"iat":1795925400}"#
        return try! Assertion(
            jwt: Fixtures.jwt(payload: payload), origin: "/var/run/secrets/eks.amazonaws.com/serviceaccount/token", loadedAt: AWSBodies.motoReceivedAt
        )
    }()
    static let who = "iss='https://oidc.example.com/cluster-1', sub='system:serviceaccount:payments:ledger-writer', aud='sts.amazonaws.com'"

    @Test func motoValidationErrorIsARejectionWithTheAWSMessage() {
        let error = failure(xml(400, AWSBodies.motoValidationError), assertion: Self.assertion)
        #expect(error?.code == .upstreamRejected)
        #expect(error?.isRetryable == false)
        let message = error?.message ?? ""
        #expect(
            message.hasPrefix(
                "AWS STS ValidationError: AWS STS refused a parameter: roleArn arn:aws:iam::123456789012:role/ledger-writer, durationSeconds 3600"))
        #expect(message.contains("AWS said: 1 validation error detected: Value 'sssss"))
        #expect(
            error?.upstream
                == TokenExchangeError.Upstream(status: 400, error: "ValidationError", traceId: "uAQJcJcTyH4E0reGNgUu62xAEcC7pq2Ruyycb288l1R7mOmADCBR")
        )
    }

    @Test(arguments: [
        (
            "InvalidIdentityToken", "No OpenIDConnect provider found in your account for https://oidc.example.com/cluster-1", false,
            "IAM OIDC identity provider"
        ),
        (
            "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", false,
            "trust policy of arn:aws:iam::123456789012:role/ledger-writer"
        ),
        ("IDPRejectedClaim", "Claim rejected", false, "rejected a claim"),
        (
            "ExpiredTokenException", "Token expired: current date/time 1795929100 must be before the expiration date/time 1795929000", true,
            "exp=1795929000"
        ),
        ("RegionDisabledException", "STS is not activated in this region", false, "region us-east-1"),
        ("SomethingNew", "Odd.", false, "rejected AssumeRoleWithWebIdentity"),
    ])
    func rejectionsNameTheCodeTheAWSMessageAndTheAssertion(code: String, awsMessage: String, retryable: Bool, hint: String) {
        let error = failure(xml(400, AWSBodies.awsError(code, awsMessage)), assertion: Self.assertion)
        #expect(error?.code == .upstreamRejected)
        #expect(error?.isRetryable == retryable)
        let message = error?.message ?? ""
        #expect(message.hasPrefix("AWS STS \(code): "))
        #expect(message.contains(hint), "\(message)")
        #expect(message.contains("AWS said: \(awsMessage)"))
        if code != "ExpiredTokenException" && code != "RegionDisabledException" {
            #expect(message.contains(Self.who), "\(message)")
        }
        #expect(error?.upstream?.error == code)
        #expect(error?.upstream?.traceId == "c6104cbe-af31-11e0-8154-cbc7ccf896c7")
    }

    @Test(arguments: [
        (400, "Throttling", "Rate exceeded"), (429, "ThrottlingException", "Rate exceeded"), (400, "RequestLimitExceeded", "Slow down"),
    ])
    func throttlingIsThrottled(status: Int, code: String, text: String) {
        let error = failure(xml(status, AWSBodies.awsError(code, text), headers: [HeaderField("Retry-After", "3")]))
        #expect(error?.code == .throttled)
        #expect(error?.isRetryable == true)
        #expect(error?.retryAfter == .seconds(3))
    }

    @Test func throttlingWithoutABodyIsThrottled() {
        #expect(failure(xml(429, ""))?.code == .throttled)
    }

    @Test func idpCommunicationErrorIsRetryableUnavailableNamingTheIssuer() {
        let error = failure(
            xml(400, AWSBodies.awsError("IDPCommunicationError", "Couldn't retrieve verification key from your identity provider")),
            assertion: Self.assertion)
        #expect(error?.code == .upstreamUnavailable)
        #expect(error?.isRetryable == true)
        #expect(error?.message.contains("iss='https://oidc.example.com/cluster-1'") == true)
    }

    @Test(arguments: [500, 502, 503])
    func serverErrorsAreRetryableUnavailable(status: Int) {
        for body in [
            AWSBodies.awsError("InternalFailure", "Internal error", type: "Receiver"),
            "<!doctype html><html><title>500 Internal Server Error</title></html>", "",
        ] {
            let error = failure(xml(status, body))
            #expect(error?.code == .upstreamUnavailable)
            #expect(error?.isRetryable == true)
            #expect(error?.message.contains("<") == false)
        }
    }

    @Test(arguments: [
        (400, TokenExchangeError.Code.upstreamRejected), (403, .upstreamRejected), (404, .upstreamUnavailable), (405, .upstreamUnavailable),
    ])
    func bodilessClientErrors(status: Int, code: TokenExchangeError.Code) {
        let error = failure(xml(status, "<html>nope</html>"))
        #expect(error?.code == code)
        #expect(error?.message.hasPrefix("AWS STS HTTP \(status)") == true)
    }

    @Test func echoedTokensAreRedacted() {
        let assertion = Fixtures.assertion()
        let body = AWSBodies.awsError(
            "ValidationError", "1 validation error detected: Value '\(assertion.jwt)' at 'webIdentityToken' failed to satisfy constraint")
        let error = failure(xml(400, body), assertion: assertion)
        #expect(error?.message.contains("Value '[redacted]' at 'webIdentityToken'") == true, "\(error?.message ?? "")")
    }
}

@Suite struct AWSSTSExchangerComposition {
    @Test func exchangesThroughTheTransportWithTheResolvedSessionName() async throws {
        let transport = RecordingTransport(response: xml(200, AWSBodies.motoSuccess))
        let exchanger = try AWSSTSExchanger(
            configuration: try AWSSTSConfiguration(roleArn: AWSFixtures.roleArn, endpoint: "http://127.0.0.1:5000"),
            identity: "ledger", transport: transport, now: { AWSBodies.motoReceivedAt })
        let token = try await exchanger.exchange(Fixtures.assertion(), for: Scope("ignored"))
        #expect(token.awsCredentials?.accessKeyId == "ASIARZPUZDIKBVEYK5UV")
        let request = try #require(transport.requests.first)
        #expect(request.url == "http://127.0.0.1:5000/")
        let fields = FormEncoding.decode(String(decoding: request.body, as: UTF8.self))
        #expect(fields.first { $0.0 == "RoleSessionName" }?.1 == "tokenbroker-ledger")
        #expect(!fields.contains { $0.1 == "ignored" })
    }
}
