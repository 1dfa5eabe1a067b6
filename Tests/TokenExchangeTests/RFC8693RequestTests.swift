import Foundation
import Testing
import TokenExchange

enum RFC8693Fixtures {
    static let endpoint = "https://sts.example.com/oauth2/token"

    static let configuration = try! RFC8693Configuration(
        tokenEndpoint: endpoint, audience: "urn:example:payments", requestedTokenType: RFC8693Configuration.accessTokenType)

    static let scope = Scope("payments.read payments.write")

    static let issuedToken = Fixtures.jwt(payload: #"{"iss":"https://sts.example.com","sub":"ledger","aud":"urn:example:payments","exp":1795917723}"#)

    static func success(_ extra: String = #","expires_in":3600"#) -> String {
        #"{"access_token":"\#(issuedToken)","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer""# + extra + "}"
    }
}

@Suite struct RFC8693ConfigurationValidation {
    @Test func defaultsAreTheJWTSubjectTypeAndNothingElse() throws {
        let configuration = try RFC8693Configuration(tokenEndpoint: " https://sts.example.com/token \n")
        #expect(configuration.tokenEndpoint == "https://sts.example.com/token")
        #expect(configuration.subjectTokenType == "urn:ietf:params:oauth:token-type:jwt")
        #expect(configuration.audience == nil && configuration.resource == nil && configuration.requestedTokenType == nil)
        #expect(configuration.clientId == nil && configuration.clientSecret == nil)
    }

    @Test(arguments: ["http://127.0.0.1:8080/token", "http://localhost/token", "http://[::1]:9/t", "https://sts.example.com:8443/a/b?tenant=x"])
    func acceptedEndpoints(url: String) throws {
        #expect(try RFC8693Configuration(tokenEndpoint: url).tokenEndpoint == url)
    }

    @Test(arguments: [
        "http://sts.example.com/token", "sts.example.com/token", "", "https://", "ftp://sts.example.com",
        "https://user:pass@sts.example.com/token", "https://sts.example.com/token#frag", "/token",
    ])
    func rejectedEndpointsNameTheField(url: String) {
        let error = #expect(throws: RFC8693ConfigurationError.self) { try RFC8693Configuration(tokenEndpoint: url) }
        #expect(error?.message.hasPrefix("tokenEndpoint ") == true)
        #expect(error?.message.contains("pass") == false)
    }

    @Test func plainHTTPRefusalExplainsWhy() {
        let error = #expect(throws: RFC8693ConfigurationError.self) { try RFC8693Configuration(tokenEndpoint: "http://sts.example.com/token") }
        #expect(error?.message.contains("loopback") == true)
    }

    @Test(arguments: [
        (RFC8693Fields(audience: ""), "audience"),
        (RFC8693Fields(audience: "a\nb"), "audience"),
        (RFC8693Fields(resource: "relative/path"), "resource"),
        (RFC8693Fields(resource: "https://api.example.com/#x"), "resource"),
        (RFC8693Fields(resource: ""), "resource"),
        (RFC8693Fields(subjectTokenType: "jwt"), "subjectTokenType"),
        (RFC8693Fields(subjectTokenType: ""), "subjectTokenType"),
        (RFC8693Fields(requestedTokenType: "access token"), "requestedTokenType"),
        (RFC8693Fields(clientId: "app"), "clientId needs clientSecret"),
        (RFC8693Fields(clientSecret: "s3cr3t-value"), "clientSecret (clientSecretFile) needs clientId"),
        (RFC8693Fields(clientId: "", clientSecret: "s3cr3t-value"), "clientId"),
        (RFC8693Fields(clientId: "app", clientSecret: ""), "clientSecret"),
    ])
    func badFieldsAreNamed(fields: RFC8693Fields, prefix: String) {
        let error = #expect(throws: RFC8693ConfigurationError.self) { try fields.make() }
        #expect(error?.message.hasPrefix(prefix) == true, "\(error?.message ?? "")")
    }

    @Test func descriptionRedactsTheClientSecret() throws {
        let configuration = try RFC8693Configuration(tokenEndpoint: RFC8693Fixtures.endpoint, clientId: "app", clientSecret: "very-secret-value")
        #expect(!"\(configuration)".contains("very-secret-value"))
        #expect("\(configuration)".contains("clientId: app"))
    }
}

struct RFC8693Fields: Sendable, CustomTestStringConvertible {
    var audience: String?
    var resource: String?
    var subjectTokenType = RFC8693Configuration.jwtTokenType
    var requestedTokenType: String?
    var clientId: String?
    var clientSecret: String?

    func make() throws(RFC8693ConfigurationError) -> RFC8693Configuration {
        try RFC8693Configuration(
            tokenEndpoint: RFC8693Fixtures.endpoint, audience: audience, resource: resource, subjectTokenType: subjectTokenType,
            requestedTokenType: requestedTokenType, clientId: clientId, clientSecret: clientSecret)
    }

    var testDescription: String {
        [
            audience.map { "audience=\($0.debugDescription)" }, resource.map { "resource=\($0.debugDescription)" },
            "subjectTokenType=\(subjectTokenType.debugDescription)", requestedTokenType.map { "requested=\($0.debugDescription)" },
            clientId.map { "clientId=\($0.debugDescription)" }, clientSecret.map { _ in "clientSecret" },
        ]
        .compactMap { $0 }.joined(separator: " ")
    }
}

@Suite struct RFC8693TokenRequestShape {
    @Test func formFieldsAreExactlyTheTokenExchangeParameters() throws {
        let assertion = Fixtures.assertion()
        let configuration = try RFC8693Configuration(
            tokenEndpoint: RFC8693Fixtures.endpoint, audience: "urn:example:payments", resource: "https://api.example.com/payments",
            subjectTokenType: RFC8693Configuration.idTokenType, requestedTokenType: RFC8693Configuration.accessTokenType)
        let fields = RFC8693TokenRequest.formFields(configuration: configuration, scope: RFC8693Fixtures.scope, assertion: assertion)
        #expect(fields.map(\.0) == ["grant_type", "subject_token", "subject_token_type", "audience", "resource", "scope", "requested_token_type"])
        #expect(
            fields.map(\.1) == [
                "urn:ietf:params:oauth:grant-type:token-exchange",
                assertion.jwt,
                "urn:ietf:params:oauth:token-type:id_token",
                "urn:example:payments",
                "https://api.example.com/payments",
                "payments.read payments.write",
                "urn:ietf:params:oauth:token-type:access_token",
            ])
    }

    @Test func unsetOptionalsAndAnEmptyScopeAreLeftOut() throws {
        let configuration = try RFC8693Configuration(tokenEndpoint: RFC8693Fixtures.endpoint)
        let fields = RFC8693TokenRequest.formFields(configuration: configuration, scope: Scope(""), assertion: Fixtures.assertion())
        #expect(fields.map(\.0) == ["grant_type", "subject_token", "subject_token_type"])
        #expect(fields.last?.1 == "urn:ietf:params:oauth:token-type:jwt")
    }

    @Test func requestIsAFormPOSTAskingForJSONWithoutClientAuthentication() {
        let assertion = Fixtures.assertion()
        let request = RFC8693TokenRequest.make(configuration: RFC8693Fixtures.configuration, scope: RFC8693Fixtures.scope, assertion: assertion)
        #expect(request.method == "POST")
        #expect(request.url == RFC8693Fixtures.endpoint)
        #expect(
            request.headers == [
                HeaderField("Content-Type", "application/x-www-form-urlencoded"),
                HeaderField("Accept", "application/json"),
            ])
        let body = String(decoding: request.body, as: UTF8.self)
        #expect(body.hasPrefix("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token="))
        #expect(body.contains("&scope=payments.read+payments.write&"))
        let decoded = FormEncoding.decode(body)
        #expect(decoded.map(\.0) == ["grant_type", "subject_token", "subject_token_type", "audience", "scope", "requested_token_type"])
        #expect(decoded.first { $0.0 == "subject_token" }?.1 == assertion.jwt)
    }

    @Test(arguments: [
        ("app", "secret", "Basic YXBwOnNlY3JldA=="),
        // RFC 6749 §2.3.1: id and secret are form-encoded before base64, so ':' survives.
        ("urn:app:1", "p@ss w:rd", "Basic " + Data("urn%3Aapp%3A1:p%40ss+w%3Ard".utf8).base64EncodedString()),
    ])
    func clientAuthenticationIsHTTPBasicWithFormEncodedParts(id: String, secret: String, expected: String) throws {
        let configuration = try RFC8693Configuration(tokenEndpoint: RFC8693Fixtures.endpoint, clientId: id, clientSecret: secret)
        let request = RFC8693TokenRequest.make(configuration: configuration, scope: RFC8693Fixtures.scope, assertion: Fixtures.assertion())
        #expect(request.headers.last == HeaderField("Authorization", expected))
        let body = String(decoding: request.body, as: UTF8.self)
        #expect(!body.contains("client_id") && !body.contains("client_secret") && !body.contains(secret))
    }
}
