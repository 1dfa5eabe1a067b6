import AsyncHTTPClient
import DevIdentityProvider
import Foundation
import NIOCore
import NIOHTTP1
import Testing

extension ProviderFixture {
    /// An RFC 8693 request with `subjectToken`; `fields` override or add parameters (nil removes one).
    func exchange(
        subjectToken: String?, overrides: [String: String?] = [:], authorization: String? = nil
    ) async throws -> Reply {
        var fields: [(String, String)] = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("audience", "urn:example:payments"),
            ("scope", "payments.read"),
            ("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ]
        if let subjectToken { fields.insert(("subject_token", subjectToken), at: 1) }
        for (name, value) in overrides {
            fields.removeAll { $0.0 == name }
            if let value { fields.append((name, value)) }
        }
        var request = HTTPClientRequestShim(url: endpoints.stsTokenEndpoint, body: Array(Self.formEncode(fields).utf8))
        request.authorization = authorization
        return try await request.send(with: self)
    }

    func stsToken() throws -> String {
        try String(contentsOfFile: endpoints.stsTokenFile, encoding: .utf8)
    }
}

/// A form POST with an optional Authorization header (the fixture's `send` has no header parameter).
struct HTTPClientRequestShim {
    var url: String
    var body: [UInt8]
    var authorization: String?

    func send(with fixture: ProviderFixture) async throws -> ProviderFixture.Reply {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.body = .bytes(ByteBuffer(bytes: body))
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        let response = try await fixture.client.execute(request, timeout: .seconds(30))
        let collected = try await response.body.collect(upTo: 1 << 20)
        return ProviderFixture.Reply(status: response.status, headers: response.headers, body: Array(buffer: collected))
    }
}

/// The RFC 8693 endpoint must accept exactly a valid exchange of a dev-issuer token and refuse
/// the rest with RFC 6749 errors that say what was refused.
@Suite struct TokenExchangeEndpointBehaviour {
    @Test func endpointsAreAnnouncedInProviderJSON() async throws {
        try await ProviderFixture.with { f in
            #expect(f.endpoints.stsTokenEndpoint == f.endpoints.authorityHost + "/sts/token")
            #expect(f.endpoints.stsAudience == "tokenbroker-dev-sts")
            #expect(f.endpoints.stsTokenFile == f.directory + "/state/tokens/sts-token")
            let json =
                try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: f.directory + "/state/provider.json"))) as? [String: Any]
            #expect(json?["stsTokenEndpoint"] as? String == f.endpoints.stsTokenEndpoint)
            #expect(json?["stsTokenFile"] as? String == f.endpoints.stsTokenFile)
            #expect(json?["stsAudience"] as? String == "tokenbroker-dev-sts")
        }
    }

    @Test func exchangesTheSTSTokenFileForASignedAccessToken() async throws {
        try await ProviderFixture.with { f in
            let subject = try f.stsToken()
            #expect(jwtPayload(subject)["aud"] as? [String] == ["tokenbroker-dev-sts"])
            #expect(jwtPayload(subject)["sub"] as? String == "system:serviceaccount:default:workload")
            let reply = try await f.exchange(subjectToken: subject)
            #expect(reply.status == .ok, "\(reply.text)")
            let body = reply.json
            #expect(Set(body.keys) == ["access_token", "issued_token_type", "token_type", "expires_in", "scope"])
            #expect(body["issued_token_type"] as? String == "urn:ietf:params:oauth:token-type:access_token")
            #expect(body["token_type"] as? String == "Bearer")
            #expect(body["expires_in"] as? Int == 3600)
            #expect(body["scope"] as? String == "payments.read")
            let token = try #require(body["access_token"] as? String)
            let claims = jwtPayload(token)
            #expect(claims["iss"] as? String == f.endpoints.authorityHost + "/sts")
            #expect(claims["sub"] as? String == "system:serviceaccount:default:workload")
            #expect(claims["aud"] as? String == "urn:example:payments")
            #expect(claims["scope"] as? String == "payments.read")
            #expect(jwtHeader(token)["alg"] as? String == "RS256")
            let keys = try await f.send(.GET, f.endpoints.authorityHost + "/sts/keys").json["keys"] as? [[String: Any]]
            #expect(keys?.first?["kid"] as? String == jwtHeader(token)["kid"] as? String)
            #expect(reply.headers.first(name: "X-Request-Id") != nil)
        }
    }

    @Test func minimalRequestAndTheIDTokenTypeAreAccepted() async throws {
        try await ProviderFixture.with { f in
            let reply = try await f.exchange(
                subjectToken: try f.stsToken(),
                overrides: [
                    "audience": nil, "scope": nil, "requested_token_type": nil,
                    "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
                ])
            #expect(reply.status == .ok, "\(reply.text)")
            #expect(reply.json["scope"] == nil)
            #expect(jwtPayload(try #require(reply.json["access_token"] as? String))["aud"] as? String == f.endpoints.authorityHost + "/sts")
        }
    }

    @Test func refusedSubjectIsInvalidGrantNamingTheSubject() async throws {
        try await ProviderFixture.with { f in
            let token = try await f.mint(["sub": "system:serviceaccount:default:intruder", "aud": ["tokenbroker-dev-sts"]])
            let reply = try await f.exchange(subjectToken: token)
            #expect(reply.status == .badRequest)
            #expect(reply.json["error"] as? String == "invalid_grant")
            #expect(
                reply.json["error_description"] as? String
                    == "subject 'system:serviceaccount:default:intruder' is not allowed to exchange tokens at this service (the match is exact and case-sensitive)"
            )
            #expect(reply.headers.first(name: "Content-Type")?.hasPrefix("application/json") == true)
        }
    }

    @Test func extraSubjectsAreAccepted() async throws {
        try await ProviderFixture.with(configure: { $0.extraSubjects = ["repo:octo/ledger:ref:refs/heads/main"] }) { f in
            let token = try await f.mint(["sub": "repo:octo/ledger:ref:refs/heads/main", "aud": ["tokenbroker-dev-sts"]])
            #expect(try await f.exchange(subjectToken: token).status == .ok)
        }
    }

    @Test func theEntraAudienceIsNotEnough() async throws {
        try await ProviderFixture.with { f in
            let reply = try await f.exchange(subjectToken: try f.currentTokenFile())
            #expect(reply.json["error"] as? String == "invalid_grant")
            #expect(
                reply.json["error_description"] as? String
                    == "subject_token audience 'api://AzureADTokenExchange' does not include 'tokenbroker-dev-sts'")
        }
    }

    @Test func configuredAudienceIsRequired() async throws {
        try await ProviderFixture.with(configure: { $0.stsAudience = "https://sts.dev.example" }) { f in
            #expect(jwtPayload(try f.stsToken())["aud"] as? [String] == ["https://sts.dev.example"])
            #expect(try await f.exchange(subjectToken: try f.stsToken()).status == .ok)
            let old = try await f.mint(["aud": ["tokenbroker-dev-sts"]])
            #expect(try await f.exchange(subjectToken: old).json["error"] as? String == "invalid_grant")
        }
    }

    @Test func foreignIssuerIsRefusedWithoutFetchingIt() async throws {
        try await ProviderFixture.with { f in
            let token = try await f.mint(["iss": "https://127.0.0.1:1", "aud": ["tokenbroker-dev-sts"]])
            let reply = try await f.exchange(subjectToken: token)
            #expect(reply.json["error"] as? String == "invalid_grant")
            #expect((reply.json["error_description"] as? String)?.hasPrefix("subject_token issuer 'https://127.0.0.1:1' is not trusted") == true)
        }
    }

    @Test func expiredNotYetValidAndTooLongLivedTokensAreRefused() async throws {
        try await ProviderFixture.with { f in
            let expired = try await f.mint(["aud": ["tokenbroker-dev-sts"], "issuedAtOffsetSeconds": -7200, "ttlSeconds": 3600])
            let early = try await f.mint(["aud": ["tokenbroker-dev-sts"], "notBeforeOffsetSeconds": 3600])
            let long = try await f.mint(["aud": ["tokenbroker-dev-sts"], "ttlSeconds": 26 * 3600])
            for (token, text) in [(expired, "expired at"), (early, "is not valid before"), (long, "exceeds the maximum")] {
                let reply = try await f.exchange(subjectToken: token)
                #expect(reply.status == .badRequest)
                #expect(reply.json["error"] as? String == "invalid_grant")
                #expect((reply.json["error_description"] as? String)?.contains(text) == true, "\(reply.text)")
            }
            let withinSkew = try await f.mint(["aud": ["tokenbroker-dev-sts"], "notBeforeOffsetSeconds": 60])
            #expect(try await f.exchange(subjectToken: withinSkew).status == .ok)
        }
    }

    @Test func badSignaturesAreRefusedNamingTheSubject() async throws {
        try await ProviderFixture.with { f in
            let foreign = try await f.mint(["aud": ["tokenbroker-dev-sts"], "foreignKey": true])
            let reply = try await f.exchange(subjectToken: foreign)
            #expect(reply.json["error"] as? String == "invalid_grant")
            #expect(
                (reply.json["error_description"] as? String)?.hasPrefix(
                    "subject_token signature validation failed for subject 'system:serviceaccount:default:workload'") == true)

            var parts = try f.stsToken().split(separator: ".").map(String.init)
            var signature = Array(parts[2])
            signature[10] = signature[10] == "A" ? "B" : "A"
            parts[2] = String(signature)
            #expect(try await f.exchange(subjectToken: parts.joined(separator: ".")).json["error"] as? String == "invalid_grant")
        }
    }

    @Test(
        arguments: [
            (["grant_type": nil], "invalid_request", "missing grant_type"),
            (["grant_type": "client_credentials"], "unsupported_grant_type", "grant_type 'client_credentials' is not supported"),
            (["subject_token_type": nil], "invalid_request", "missing subject_token_type"),
            (
                ["subject_token_type": "urn:ietf:params:oauth:token-type:saml2"], "invalid_request",
                "subject_token_type 'urn:ietf:params:oauth:token-type:saml2' is not supported"
            ),
            (["requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"], "invalid_request", "cannot be issued"),
            (["actor_token": "x"], "invalid_request", "actor_token (delegation) is not supported"),
            (["resource": "not a uri"], "invalid_target", "resource 'not a uri'"),
            (["audience": ""], "invalid_target", "audience must not be empty"),
        ] as [([String: String?], String, String)])
    func malformedRequestsAreRefused(overrides: [String: String?], error: String, description: String) async throws {
        try await ProviderFixture.with { f in
            let reply = try await f.exchange(subjectToken: try f.stsToken(), overrides: overrides)
            #expect(reply.status == .badRequest)
            #expect(reply.json["error"] as? String == error)
            #expect((reply.json["error_description"] as? String)?.contains(description) == true, "\(reply.text)")
        }
    }

    @Test func missingOrGarbageSubjectTokensAreInvalidRequests() async throws {
        try await ProviderFixture.with { f in
            #expect(try await f.exchange(subjectToken: nil).json["error_description"] as? String == "missing subject_token")
            for garbage in ["not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30"] {
                let reply = try await f.exchange(subjectToken: garbage)
                #expect(reply.json["error"] as? String == "invalid_request")
                #expect(reply.json["error_description"] as? String == "subject_token is not a JWT")
            }
        }
    }

    @Test func configuredClientAuthenticationIsRequired() async throws {
        try await ProviderFixture.with(configure: {
            $0.stsClientId = "urn:broker:1"
            $0.stsClientSecret = "dev secret:1"
        }) { f in
            let token = try f.stsToken()
            let none = try await f.exchange(subjectToken: token)
            #expect(none.status == .unauthorized)
            #expect(none.json["error"] as? String == "invalid_client")
            #expect(none.headers.first(name: "WWW-Authenticate")?.hasPrefix("Basic ") == true)
            let wrong = try await f.exchange(subjectToken: token, authorization: "Basic " + Data("urn%3Abroker%3A1:nope".utf8).base64EncodedString())
            #expect(wrong.status == .unauthorized)
            // RFC 6749 §2.3.1: both parts form-encoded before base64.
            let right = try await f.exchange(
                subjectToken: token, authorization: "Basic " + Data("urn%3Abroker%3A1:dev+secret%3A1".utf8).base64EncodedString())
            #expect(right.status == .ok, "\(right.text)")
            #expect(jwtPayload(try #require(right.json["access_token"] as? String))["client_id"] as? String == "urn:broker:1")
        }
    }

    @Test func exchangesAreCountedInStatsWithoutKeepingTokens() async throws {
        try await ProviderFixture.with { f in
            let token = try f.stsToken()
            _ = try await f.exchange(subjectToken: token)
            let intruder = try await f.mint(["sub": "system:serviceaccount:default:intruder", "aud": ["tokenbroker-dev-sts"]])
            _ = try await f.exchange(subjectToken: intruder)
            _ = try await f.requestToken(assertion: try f.currentTokenFile())

            let reply = try await f.send(.GET, f.endpoints.authorityHost + "/_dev/stats")
            #expect(!reply.text.contains(token) && !reply.text.contains(intruder))
            let stats = reply.json
            #expect(stats["tokenRequests"] as? Int == 3)
            #expect(stats["exchangeRequests"] as? Int == 2)
            let requests = try #require(stats["requests"] as? [[String: Any]])
            #expect(requests.map { $0["endpoint"] as? String } == ["sts", "sts", "entra"])
            let first = requests[0]
            #expect(
                first["fields"] as? [String] == ["grant_type", "subject_token", "subject_token_type", "audience", "scope", "requested_token_type"])
            #expect(first["subjectTokenType"] as? String == "urn:ietf:params:oauth:token-type:jwt")
            #expect(first["requestedTokenType"] as? String == "urn:ietf:params:oauth:token-type:access_token")
            #expect(first["audience"] as? String == "urn:example:payments")
            #expect(first["assertionSubject"] as? String == "system:serviceaccount:default:workload")
            #expect((first["assertionSha256"] as? String)?.count == 64)
            #expect(first["status"] as? Int == 200)
            #expect(requests[1]["status"] as? Int == 400)
            #expect(requests[1]["error"] as? String == "invalid_grant")
            #expect(requests[1]["assertionSubject"] as? String == "system:serviceaccount:default:intruder")
        }
    }

    @Test func plannedFaultsAndRotationApplyToo() async throws {
        try await ProviderFixture.with { f in
            _ = try await f.postJSON(f.endpoints.authorityHost + "/_dev/faults", ["status": 429, "count": 1, "retryAfterSeconds": 2])
            let throttled = try await f.exchange(subjectToken: try f.stsToken())
            #expect(throttled.status == .tooManyRequests)
            #expect(throttled.headers.first(name: "Retry-After") == "2")
            #expect(try await f.exchange(subjectToken: try f.stsToken()).status == .ok)

            let before = jwtPayload(try f.stsToken())["jti"] as? String
            _ = try await f.send(.POST, f.endpoints.issuerURL + "/_dev/rotate")
            #expect(jwtPayload(try f.stsToken())["jti"] as? String != before)
        }
    }
}
