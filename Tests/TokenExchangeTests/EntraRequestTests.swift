import Foundation
import Testing
import TokenExchange

@Suite struct ScopeFromResource {
    @Test(arguments: [
        ("https://storage.azure.com", "https://storage.azure.com/.default"),
        ("https://storage.azure.com/", "https://storage.azure.com/.default"),
        ("https://storage.azure.com//", "https://storage.azure.com/.default"),
        ("https://vault.azure.net", "https://vault.azure.net/.default"),
        ("api://AzureADTokenExchange", "api://AzureADTokenExchange/.default"),
    ])
    func resourceMapsToDotDefault(resource: String, scope: String) {
        #expect(Scope(resource: resource).value == scope)
        #expect(Scope(resource: resource) == Scope(scope))
    }

    @Test func trailingSlashVariantsShareOneKey() {
        #expect(Set([Scope(resource: "https://storage.azure.com"), Scope(resource: "https://storage.azure.com/")]).count == 1)
    }

    @Test(arguments: [
        ("https://storage.azure.com/.default", "https://storage.azure.com"),
        ("api://my-app/.default", "api://my-app"),
        ("api://my-app/read", "api://my-app/read"),
        ("openid", "openid"),
    ])
    func resourceIsTheScopeWithoutDotDefault(scope: String, resource: String) {
        #expect(Scope(scope).resource == resource)
        #expect(Scope(scope).description == scope)
    }

    @Test func resourceRoundTrips() {
        #expect(Scope(resource: "https://management.azure.com/").resource == "https://management.azure.com")
    }
}

@Suite struct FormEncodingRoundTrip {
    @Test(arguments: [
        ("+", "%2B"), ("/", "%2F"), (":", "%3A"), ("=", "%3D"), ("&", "%26"),
        (" ", "+"), ("%", "%25"), ("~-._", "~-._"), ("aZ09", "aZ09"), ("é", "%C3%A9"), ("?#", "%3F%23"),
    ])
    func escapesReservedCharacters(text: String, escaped: String) {
        #expect(FormEncoding.encode([("k", text)]) == "k=\(escaped)")
        #expect(FormEncoding.encode([(text, "v")]) == "\(escaped)=v")
    }

    @Test func encodesInOrderJoinedByAmpersand() {
        #expect(FormEncoding.encode([("b", "2"), ("a", "1"), ("c", "")]) == "b=2&a=1&c=")
    }

    @Test func decodeInvertsEncode() {
        let fields = [
            ("scope", "https://storage.azure.com/.default"),
            ("client_assertion", Fixtures.serviceAccountJWT()),
            ("odd key&=", "a+b c/d:e=f&g%h"),
            ("empty", ""),
            ("unicode", "日本語 ✓"),
        ]
        let decoded = FormEncoding.decode(FormEncoding.encode(fields))
        #expect(decoded.map(\.0) == fields.map(\.0))
        #expect(decoded.map(\.1) == fields.map(\.1))
    }

    @Test func decodeReadsPlusAsSpaceAndToleratesOddInput() {
        let decoded = FormEncoding.decode("a=1+2&b&&c=%zz&d=%41")
        #expect(decoded.map(\.0) == ["a", "b", "c", "d"])
        #expect(decoded.map(\.1) == ["1 2", "", "%zz", "A"])
    }
}

@Suite struct EntraConfigurationValidation {
    @Test func defaultsToThePublicCloud() throws {
        let configuration = try EntraConfiguration(tenantId: Fixtures.tenantId, clientId: Fixtures.clientId)
        #expect(configuration.authorityHost == "https://login.microsoftonline.com")
        #expect(configuration.tokenEndpoint == "https://login.microsoftonline.com/\(Fixtures.tenantId)/oauth2/v2.0/token")
    }

    @Test(arguments: [
        ("https://login.microsoftonline.com/", "https://login.microsoftonline.com"),
        ("https://login.chinacloudapi.cn//", "https://login.chinacloudapi.cn"),
        ("  https://login.microsoftonline.us/ \n", "https://login.microsoftonline.us"),
        ("HTTPS://127.0.0.1:8443", "HTTPS://127.0.0.1:8443"),
    ])
    func authorityHostIsNormalised(host: String, expected: String) throws {
        let configuration = try EntraConfiguration(tenantId: "contoso.onmicrosoft.com", clientId: Fixtures.clientId, authorityHost: host)
        #expect(configuration.authorityHost == expected)
        #expect(configuration.tokenEndpoint == "\(expected)/contoso.onmicrosoft.com/oauth2/v2.0/token")
    }

    @Test(arguments: [
        "http://login.microsoftonline.com", "http://127.0.0.1:8080/", "login.microsoftonline.com", "https://", "https:///", "", "ftp://x",
    ])
    func nonHTTPSAuthorityIsRejected(host: String) {
        let error = #expect(throws: EntraConfigurationError.self) {
            try EntraConfiguration(tenantId: Fixtures.tenantId, clientId: Fixtures.clientId, authorityHost: host)
        }
        #expect(error?.message.hasPrefix("authorityHost must be an https:// URL") == true)
    }

    @Test(arguments: ["", "contoso/../other", "tenant id", "tenant?x=1", "ténant", "a/b"])
    func badTenantIsRejected(tenant: String) {
        let error = #expect(throws: EntraConfigurationError.self) {
            try EntraConfiguration(tenantId: tenant, clientId: Fixtures.clientId)
        }
        #expect(error?.message.hasPrefix("tenantId") == true)
    }

    @Test(arguments: ["", "has space", "tab\tid"])
    func badClientIdIsRejected(client: String) {
        let error = #expect(throws: EntraConfigurationError.self) {
            try EntraConfiguration(tenantId: Fixtures.tenantId, clientId: client)
        }
        #expect(error?.message.hasPrefix("clientId") == true)
    }
}

@Suite struct EntraTokenRequestShape {
    @Test func formFieldsAreExactlyWhatWorkloadIdentityCredentialSends() {
        let assertion = Fixtures.assertion()
        let fields = EntraTokenRequest.formFields(configuration: Fixtures.configuration, scope: Fixtures.scope, assertion: assertion)
        #expect(fields.map(\.0) == ["client_id", "scope", "client_assertion_type", "client_assertion", "grant_type"])
        #expect(
            fields.map(\.1) == [
                Fixtures.clientId,
                "https://storage.azure.com/.default",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                assertion.jwt,
                "client_credentials",
            ])
    }

    @Test func requestIsAFormPOSTToTheTenantTokenEndpoint() {
        let assertion = Fixtures.assertion()
        let request = EntraTokenRequest.make(
            configuration: Fixtures.configuration, scope: Scope(resource: "https://vault.azure.net"), assertion: assertion)
        #expect(request.method == "POST")
        #expect(request.url == "https://login.microsoftonline.com/\(Fixtures.tenantId)/oauth2/v2.0/token")
        #expect(request.headers.contains(HeaderField("Content-Type", "application/x-www-form-urlencoded")))
        let body = String(decoding: request.body, as: UTF8.self)
        #expect(body.contains("scope=https%3A%2F%2Fvault.azure.net%2F.default"))
        #expect(body.contains("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"))
        let decoded = FormEncoding.decode(body)
        #expect(decoded.map(\.0) == ["client_id", "scope", "client_assertion_type", "client_assertion", "grant_type"])
        #expect(decoded.first { $0.0 == "client_assertion" }?.1 == assertion.jwt)
    }

    @Test func sovereignCloudAuthorityIsUsed() throws {
        let configuration = try EntraConfiguration(
            tenantId: Fixtures.tenantId, clientId: Fixtures.clientId, authorityHost: "https://login.chinacloudapi.cn/")
        let request = EntraTokenRequest.make(configuration: configuration, scope: Fixtures.scope, assertion: Fixtures.assertion())
        #expect(request.url == "https://login.chinacloudapi.cn/\(Fixtures.tenantId)/oauth2/v2.0/token")
    }
}
