import Foundation
import Testing
import TokenExchange

private func parse(
    _ response: UpstreamResponse, configuration: RFC8693Configuration = RFC8693Fixtures.configuration,
    scope: Scope = RFC8693Fixtures.scope, assertion: Assertion = Fixtures.assertion()
) throws(TokenExchangeError) -> RFC8693TokenResponse.Outcome {
    try RFC8693TokenResponse.parse(response, configuration: configuration, scope: scope, assertion: assertion, now: Fixtures.now)
}

private func failure(
    _ response: UpstreamResponse, configuration: RFC8693Configuration = RFC8693Fixtures.configuration, assertion: Assertion = Fixtures.assertion()
) -> TokenExchangeError? {
    let error = #expect(throws: TokenExchangeError.self) { try parse(response, configuration: configuration, assertion: assertion) }
    if let error {
        #expect(!error.message.contains(assertion.jwt))
        #expect(!error.message.contains(RFC8693Fixtures.issuedToken))
    }
    return error
}

private func oauthError(_ error: String, _ description: String? = nil, uri: String? = nil) -> String {
    var object = [#""error":"\#(error)""#]
    if let description { object.append(#""error_description":"\#(description)""#) }
    if let uri { object.append(#""error_uri":"\#(uri)""#) }
    return "{" + object.joined(separator: ",") + "}"
}

@Suite struct RFC8693SuccessParsing {
    @Test func conformingAnswerGivesABearerTokenWithoutWarnings() throws {
        let outcome = try parse(Fixtures.response(200, RFC8693Fixtures.success(#","expires_in":3600,"scope":"payments.read payments.write""#)))
        #expect(outcome.token.value == RFC8693Fixtures.issuedToken)
        #expect(outcome.token.tokenType == "Bearer")
        #expect(outcome.token.issuedAt == Fixtures.now)
        #expect(outcome.token.expiresAt == Fixtures.now.addingTimeInterval(3600))
        #expect(outcome.token.refreshAt == nil && outcome.token.awsCredentials == nil)
        #expect(outcome.issuedTokenType == RFC8693Configuration.accessTokenType)
        #expect(outcome.warnings == [])
    }

    @Test(arguments: [
        (#","expires_in":"1800""#, 1800.0),
        (#","expires_in":1"#, 1),
        (#","expires_in":599.5"#, 599.5),
        (#","expires_in":31536000"#, 31_536_000),
    ])
    func expiresInIsANumberOrANumericString(extra: String, seconds: TimeInterval) throws {
        let outcome = try parse(Fixtures.response(200, RFC8693Fixtures.success(extra)))
        #expect(outcome.token.expiresAt == Fixtures.now.addingTimeInterval(seconds))
    }

    @Test(arguments: [("bearer", "Bearer"), ("BEARER", "Bearer"), ("N_A", "N_A"), ("n_a", "N_A")])
    func tokenTypeIsNormalised(sent: String, kept: String) throws {
        let body =
            #"{"access_token":"opaque-token-value","issued_token_type":"urn:ietf:params:oauth:token-type:jwt","token_type":"\#(sent)","expires_in":60}"#
        #expect(try parse(Fixtures.response(200, body)).token.tokenType == kept)
    }

    @Test func missingIssuedTokenTypeIsAcceptedWithAClearWarning() throws {
        let body = #"{"access_token":"opaque-token-value","token_type":"Bearer","expires_in":60}"#
        let outcome = try parse(Fixtures.response(200, body))
        #expect(outcome.token.value == "opaque-token-value")
        #expect(outcome.issuedTokenType == nil)
        #expect(outcome.warnings.count == 1)
        #expect(outcome.warnings.first?.contains("left out 'issued_token_type', which RFC 8693 §2.2.1 requires") == true)
    }

    @Test func otherIssuedTokenTypeThanRequestedIsWarnedAbout() throws {
        let body = #"{"access_token":"t-value","issued_token_type":"urn:ietf:params:oauth:token-type:jwt","token_type":"N_A","expires_in":60}"#
        let outcome = try parse(Fixtures.response(200, body))
        #expect(
            outcome.warnings == [
                "requested_token_type was urn:ietf:params:oauth:token-type:access_token but the service issued urn:ietf:params:oauth:token-type:jwt"
            ])
    }

    @Test func missingTokenTypeIsTakenAsBearerWithAWarning() throws {
        let body = #"{"access_token":"t-value","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","expires_in":60}"#
        let outcome = try parse(Fixtures.response(200, body))
        #expect(outcome.token.tokenType == "Bearer")
        #expect(outcome.warnings.first?.contains("'token_type'") == true)
    }

    @Test func narrowerGrantedScopeIsWarnedAbout() throws {
        let outcome = try parse(Fixtures.response(200, RFC8693Fixtures.success(#","expires_in":60,"scope":"payments.read""#)))
        #expect(outcome.warnings == ["the token exchange service granted scope 'payments.read', not the requested 'payments.read payments.write'"])
    }

    @Test(arguments: [#""#, #","expires_in":null"#])
    func missingExpiresInFallsBackToTheJWTExp(extra: String) throws {
        let outcome = try parse(Fixtures.response(200, RFC8693Fixtures.success(extra)))
        #expect(outcome.token.expiresAt == Date(timeIntervalSince1970: 1_795_917_723))
        #expect(outcome.warnings.contains { $0.contains("lifetime was taken from the issued JWT's exp=1795917723") })
    }

    @Test(arguments: [
        (#"{"access_token":"opaque","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer"}"#, "not a JWT"),
        (#"{"access_token":"\#(Fixtures.jwt(payload: #"{"sub":"x"}"#))","token_type":"Bearer"}"#, "has no 'exp'"),
        (#"{"access_token":"\#(Fixtures.jwt(payload: #"{"exp":1795914000}"#))","token_type":"Bearer"}"#, "already past"),
        (#"{"access_token":"\#(Fixtures.jwt(payload: #"{"exp":1895914000}"#))","token_type":"Bearer"}"#, "more than a year"),
    ])
    func unknownLifetimeIsRefused(body: String, reason: String) {
        let error = failure(Fixtures.response(200, body))
        #expect(error?.code == .upstreamUnavailable)
        #expect(error?.isRetryable == true)
        #expect(error?.message.contains("without 'expires_in'") == true)
        #expect(error?.message.contains(reason) == true, "\(error?.message ?? "")")
    }

    @Test(arguments: [
        #"{"issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":60}"#,
        #"{"access_token":"","token_type":"Bearer","expires_in":60}"#,
        #"{"access_token":42,"token_type":"Bearer","expires_in":60}"#,
        #"{"access_token":"t","token_type":"Bearer","expires_in":0}"#,
        #"{"access_token":"t","token_type":"Bearer","expires_in":-5}"#,
        #"{"access_token":"t","token_type":"Bearer","expires_in":"soon"}"#,
        #"{"access_token":"t","token_type":"Bearer","expires_in":true}"#,
        #"{"access_token":"t","token_type":"Bearer","expires_in":1e19}"#,
        #"{"access_token":"t","token_type":"Bearer","expires_in":"inf"}"#,
        #"{"access_token":"t","token_type":"Bearer","expires_in":31536001}"#,
        "[]", "null", "<html>OK</html>", "", "{",
    ])
    func incompleteOrGarbageSuccessIsRetryableUnavailable(body: String) {
        let error = failure(Fixtures.response(200, body))
        #expect(error?.code == .upstreamUnavailable)
        #expect(error?.isRetryable == true)
        #expect(error?.message.hasPrefix("the token exchange service answered 200") == true)
        #expect(error?.message.contains("<html>") == false)
    }

    @Test func proofOfPossessionTokensAreRefusedForGood() {
        let body = #"{"access_token":"t","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"DPoP","expires_in":60}"#
        let error = failure(Fixtures.response(200, body))
        #expect(error?.code == .upstreamUnavailable)
        #expect(error?.isRetryable == false)
        #expect(error?.message.contains("'dpop'") == true)
    }
}

@Suite struct RFC8693ErrorMapping {
    static let assertion: Assertion = {
        let payload =
            #"{"iss":"https://token.actions.githubusercontent.com","sub":"repo:octo/ledger:environment:Prod","aud":["sts.example.com"],"exp":1795914723,"iat":1795913523}"#
        return try! Assertion(jwt: Fixtures.jwt(payload: payload), origin: "/run/secrets/gh-oidc", loadedAt: Fixtures.now)
    }()

    @Test(arguments: ["invalid_grant", "invalid_request"])
    func refusedSubjectNamesTheAssertionClaims(code: String) {
        let error = failure(
            Fixtures.response(400, oauthError(code, "subject not allowed", uri: "https://sts.example.com/errors/subject")), assertion: Self.assertion)
        #expect(error?.code == .upstreamRejected)
        #expect(error?.isRetryable == false)
        let message = error?.message ?? ""
        #expect(message.hasPrefix("HTTP 400 \(code): "))
        #expect(message.contains("iss='https://token.actions.githubusercontent.com'"))
        #expect(message.contains("sub='repo:octo/ledger:environment:Prod'"))
        #expect(message.contains("aud='sts.example.com'"))
        #expect(message.contains("/run/secrets/gh-oidc"))
        #expect(message.contains("Upstream said: subject not allowed."))
        #expect(message.contains("See https://sts.example.com/errors/subject."))
        #expect(error?.upstream == TokenExchangeError.Upstream(status: 400, error: code))
    }

    @Test(arguments: [
        (401, "invalid_client", "configure clientId and clientSecretFile"),
        (400, "unauthorized_client", "not allowed to use the token-exchange grant"),
        (400, "unsupported_grant_type", "does not support RFC 8693 token exchange"),
        (400, "invalid_target", "audience 'urn:example:payments'"),
        (400, "invalid_scope", "scope 'payments.read payments.write'"),
        (403, "access_denied", "rejected the exchange"),
    ])
    func otherOAuthErrorsGetSpecificHints(status: Int, code: String, hint: String) {
        let error = failure(Fixtures.response(status, oauthError(code, "Nope.")))
        #expect(error?.code == .upstreamRejected)
        #expect(error?.isRetryable == false)
        #expect(error?.message.hasPrefix("HTTP \(status) \(code): ") == true)
        #expect(error?.message.contains(hint) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("Upstream said: Nope.") == true)
    }

    @Test func invalidClientNamesTheConfiguredClient() throws {
        let configuration = try RFC8693Configuration(tokenEndpoint: RFC8693Fixtures.endpoint, clientId: "broker-app", clientSecret: "hunter2-hunter2")
        let error = failure(Fixtures.response(401, oauthError("invalid_client", "bad secret hunter2-hunter2")), configuration: configuration)
        #expect(error?.message.contains("client authentication as 'broker-app' failed") == true)
        #expect(error?.message.contains("hunter2-hunter2") == false)
    }

    @Test(arguments: [(401, "HTTP 401: "), (403, "HTTP 403: "), (400, "HTTP 400: ")])
    func authoritativeStatusesWithoutABodyAreRejections(status: Int, prefix: String) {
        let error = failure(Fixtures.response(status, ""))
        #expect(error?.code == .upstreamRejected)
        #expect(error?.message.hasPrefix(prefix) == true)
        #expect(error?.upstream == TokenExchangeError.Upstream(status: status))
    }

    @Test func throttlingKeepsRetryAfter() {
        let error = failure(Fixtures.response(429, "slow down", headers: [HeaderField("Retry-After", "20")]))
        #expect(error?.code == .throttled)
        #expect(error?.isRetryable == true)
        #expect(error?.retryAfter == .seconds(20))
        #expect(error?.message.contains("Retry-After: 20 s") == true)
    }

    @Test(arguments: [500, 502, 503, 504])
    func serverErrorsAreRetryableUnavailable(status: Int) {
        for body in [oauthError("temporarily_unavailable", "try later"), "<html>Bad Gateway</html>", ""] {
            let error = failure(Fixtures.response(status, body))
            #expect(error?.code == .upstreamUnavailable)
            #expect(error?.isRetryable == true)
            #expect(error?.message.contains("HTTP \(status)") == true)
            #expect(error?.message.contains("<html>") == false)
        }
    }

    @Test func notFoundHTMLIsUnavailableNamingTheEndpoint() {
        let error = failure(Fixtures.response(404, "<html>Not Found</html>"))
        #expect(error?.code == .upstreamUnavailable)
        #expect(error?.message.contains("https://sts.example.com/oauth2/token failed with HTTP 404 and a body that is not an OAuth error") == true)
    }

    @Test func temporarilyUnavailableWith400IsRetryable() {
        let error = failure(Fixtures.response(400, oauthError("temporarily_unavailable")))
        #expect(error?.code == .upstreamRejected)
        #expect(error?.isRetryable == true)
    }

    @Test func echoedTokensAndLongDescriptionsNeverReachTheMessage() {
        let assertion = Fixtures.assertion()
        let echo = oauthError(
            "invalid_grant", "bad subject_token \(assertion.jwt) and other \(RFC8693Fixtures.issuedToken) " + String(repeating: "x", count: 2000))
        let error = failure(Fixtures.response(400, echo), assertion: assertion)
        let message = error?.message ?? ""
        #expect(message.contains("bad subject_token [redacted] and other [redacted]"))
        #expect(message.count < 900)
        let payload = assertion.jwt.split(separator: ".")[1]
        #expect(!message.contains(payload))
    }

    @Test func controlCharactersInUpstreamTextAreFlattened() {
        let error = failure(Fixtures.response(400, oauthError("invalid_grant", #"line one\r\nline two\u0000"#)))
        // CR LF is one Character, so one space.
        #expect(error?.message.contains("Upstream said: line one line two.") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains(where: { $0.isNewline || $0 == "\u{0}" }) == false)
    }
}

@Suite struct RFC8693ExchangerComposition {
    @Test func sendsTheRequestAndReportsWarnings() async throws {
        let transport = RecordingTransport(
            response: Fixtures.response(200, #"{"access_token":"opaque-token-value","token_type":"Bearer","expires_in":60}"#))
        let warnings = WarningSink()
        let exchanger = RFC8693Exchanger(
            configuration: RFC8693Fixtures.configuration, transport: transport, now: { Fixtures.now }, warn: { warnings.append($0) })
        let token = try await exchanger.exchange(Fixtures.assertion(), for: RFC8693Fixtures.scope)
        #expect(token.value == "opaque-token-value")
        #expect(token.expiresAt == Fixtures.now.addingTimeInterval(60))
        #expect(transport.requests.first?.url == RFC8693Fixtures.endpoint)
        #expect(warnings.all.count == 1)
    }

    @Test func transportFailuresPassThrough() async {
        let transport = RecordingTransport(failure: .transport("connect refused to sts.example.com:443"))
        let exchanger = RFC8693Exchanger(configuration: RFC8693Fixtures.configuration, transport: transport, now: { Fixtures.now })
        let error = await #expect(throws: TokenExchangeError.self) { try await exchanger.exchange(Fixtures.assertion(), for: RFC8693Fixtures.scope) }
        #expect(error?.code == .upstreamUnavailable)
    }
}
