import DevIdentityProvider
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// The Entra emulator must accept exactly what Entra accepts and reject the rest with Entra's codes.
@Suite struct EntraEmulatorBehaviour {
    @Test func exchangesTheProjectedTokenForAnAccessToken() async throws {
        try await ProviderFixture.with { f in
            let reply = try await f.requestToken(assertion: try f.currentTokenFile())
            #expect(reply.status == .ok, "\(reply.text)")
            let body = reply.json
            #expect(body["token_type"] as? String == "Bearer")
            #expect(body["expires_in"] as? Int == 3600)
            #expect(body["ext_expires_in"] as? Int == 3600)
            #expect(body["refresh_in"] == nil)
            let token = try #require(body["access_token"] as? String)
            let claims = jwtPayload(token)
            #expect(claims["aud"] as? String == "https://storage.azure.com")
            #expect(claims["iss"] as? String == "\(f.endpoints.authorityHost)/\(f.endpoints.tenantId)/v2.0")
            #expect(claims["tid"] as? String == f.endpoints.tenantId)
            #expect(claims["appid"] as? String == f.endpoints.clientId)
            #expect(claims["azp"] as? String == f.endpoints.clientId)
            #expect(claims["oid"] is String && claims["sub"] as? String == claims["oid"] as? String)
            #expect(claims["uti"] is String && claims["jti"] is String)
            #expect(jwtHeader(token)["alg"] as? String == "RS256")

            let again = try await f.requestToken(assertion: try f.currentTokenFile())
            let second = try #require(again.json["access_token"] as? String)
            #expect(jwtPayload(second)["uti"] as? String != claims["uti"] as? String)
        }
    }

    @Test func longLivedAccessTokensCarryRefreshIn() async throws {
        try await ProviderFixture.with(configure: { $0.accessTokenLifetime = .seconds(7200) }) { f in
            let reply = try await f.requestToken(assertion: try f.currentTokenFile())
            #expect(reply.json["expires_in"] as? Int == 7200)
            #expect(reply.json["refresh_in"] as? Int == 3600)
        }
    }

    @Test func extraSubjectsAreAccepted() async throws {
        try await ProviderFixture.with(configure: { $0.extraSubjects = ["system:serviceaccount:ci:runner"] }) { f in
            let token = try await f.mint(["sub": "system:serviceaccount:ci:runner"])
            #expect(try await f.requestToken(assertion: token).status == .ok)
        }
    }

    @Test func wrongSubjectHasNoMatchingFederatedCredential() async throws {
        try await ProviderFixture.with { f in
            let token = try await f.mint(["sub": "system:serviceaccount:default:Workload"])
            let reply = try await f.requestToken(assertion: token)
            #expect(reply.status == .badRequest)
            #expect(reply.json["error"] as? String == "invalid_request")
            #expect(reply.errorCodes == [700213])
            let description = try #require(reply.json["error_description"] as? String)
            #expect(
                description.hasPrefix(
                    "AADSTS700213: No matching federated identity record found for presented assertion subject 'system:serviceaccount:default:Workload'."
                ))
        }
    }

    @Test func severalMismatchesGiveTheGeneralCode() async throws {
        try await ProviderFixture.with { f in
            let token = try await f.mint(["sub": "system:serviceaccount:x:y", "aud": ["api://Other"]])
            let reply = try await f.requestToken(assertion: token)
            #expect(reply.errorCodes == [70021])
            let description = try #require(reply.json["error_description"] as? String)
            #expect(
                description.contains(
                    "AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: '\(f.endpoints.issuerURL)'. Assertion Subject: 'system:serviceaccount:x:y'. Assertion Audience: 'api://Other'."
                ))
        }
    }

    @Test func foreignIssuerIsRejectedWithoutFetchingIt() async throws {
        try await ProviderFixture.with { f in
            let token = try await f.mint(["iss": "https://127.0.0.1:1"])
            #expect(try await f.requestToken(assertion: token).errorCodes == [700211])
        }
    }

    @Test func expiredAssertionIsOutsideItsValidTimeRange() async throws {
        try await ProviderFixture.with { f in
            let token = try await f.mint(["issuedAtOffsetSeconds": -7200, "ttlSeconds": 3600])
            let reply = try await f.requestToken(assertion: token)
            #expect(reply.status == .unauthorized)
            #expect(reply.json["error"] as? String == "invalid_client")
            #expect(reply.errorCodes == [700024])
            let description = try #require(reply.json["error_description"] as? String)
            #expect(
                description.range(
                    of:
                        #"^AADSTS700024: Client assertion is not within its valid time range\. Current time: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z, assertion valid from .*Z, expiry time of assertion .*Z\."#,
                    options: .regularExpression) != nil, "\(description)")
        }
    }

    @Test func notYetValidAssertionIsRejectedBeyondTheSkew() async throws {
        try await ProviderFixture.with { f in
            let early = try await f.mint(["notBeforeOffsetSeconds": 3600])
            #expect(try await f.requestToken(assertion: early).errorCodes == [700024])
            let withinSkew = try await f.mint(["notBeforeOffsetSeconds": 60])
            #expect(try await f.requestToken(assertion: withinSkew).status == .ok)
        }
    }

    @Test func assertionsLivingLongerThan25HoursAreRejected() async throws {
        try await ProviderFixture.with { f in
            let token = try await f.mint(["ttlSeconds": 26 * 3600])
            #expect(try await f.requestToken(assertion: token).errorCodes == [70023])
        }
    }

    @Test(arguments: ["not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30", "eyJhbGciOiJSUzI1NiJ9.%%%.c2ln"])
    func garbageIsAMalformedJWT(_ assertion: String) async throws {
        try await ProviderFixture.with { f in
            let reply = try await f.requestToken(assertion: assertion)
            #expect(reply.status == .badRequest)
            #expect(reply.errorCodes == [50027])
        }
    }

    @Test func badSignaturesAndUnknownKeysFailSignatureValidation() async throws {
        try await ProviderFixture.with { f in
            let foreign = try await f.mint(["foreignKey": true])
            #expect(try await f.requestToken(assertion: foreign).errorCodes == [700027])

            var parts = try f.currentTokenFile().split(separator: ".").map(String.init)
            // Change one character in the middle, away from base64's padding bits.
            var signature = Array(parts[2])
            signature[10] = signature[10] == "A" ? "B" : "A"
            parts[2] = String(signature)
            let tampered = try await f.requestToken(assertion: parts.joined(separator: "."))
            #expect(tampered.status == .unauthorized)
            #expect(tampered.errorCodes == [700027])
        }
    }

    @Test func unknownClientAndTenantAreRejected() async throws {
        try await ProviderFixture.with { f in
            let token = try f.currentTokenFile()
            let client = try await f.requestToken(assertion: token, clientId: "00000000-0000-0000-0000-000000000000")
            #expect(client.status == .badRequest)
            #expect(client.json["error"] as? String == "unauthorized_client")
            #expect(client.errorCodes == [700016])
            let tenant = try await f.requestToken(assertion: token, tenant: "contoso.onmicrosoft.com")
            #expect(tenant.errorCodes == [90002])
            // GUIDs are case-insensitive in Entra.
            let upper = try await f.requestToken(
                assertion: token, clientId: f.endpoints.clientId.uppercased(), tenant: f.endpoints.tenantId.uppercased())
            #expect(upper.status == .ok)
        }
    }

    @Test func scopesMustNameAResourceWithTheDefaultSuffix() async throws {
        try await ProviderFixture.with { f in
            let token = try f.currentTokenFile()
            let noSuffix = try await f.requestToken(assertion: token, scope: "https://storage.azure.com")
            #expect(noSuffix.json["error"] as? String == "invalid_scope")
            #expect(noSuffix.errorCodes == [1002012])
            #expect(try await f.requestToken(assertion: token, scope: nil).errorCodes == [900144])
            #expect(try await f.requestToken(assertion: token, scope: "a/.default b/.default").errorCodes == [70011])
            #expect(try await f.requestToken(assertion: token, assertionType: "urn:wrong").errorCodes == [7000216])
        }
    }

    @Test func errorBodiesHaveEntrasShape() async throws {
        try await ProviderFixture.with { f in
            let reply = try await f.requestToken(assertion: "garbage")
            let body = reply.json
            let traceId = try #require(body["trace_id"] as? String)
            let correlationId = try #require(body["correlation_id"] as? String)
            let timestamp = try #require(body["timestamp"] as? String)
            #expect(UUID(uuidString: traceId) != nil && UUID(uuidString: correlationId) != nil)
            #expect(timestamp.range(of: #"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$"#, options: .regularExpression) != nil)
            #expect(
                body["error_description"] as? String
                    == "AADSTS50027: JWT token is invalid or malformed.\r\nTrace ID: \(traceId)\r\nCorrelation ID: \(correlationId)\r\nTimestamp: \(timestamp)"
            )
            #expect(body["error_uri"] as? String == "https://login.microsoftonline.com/error?code=50027")
            #expect(reply.headers.first(name: "Content-Type")?.hasPrefix("application/json") == true)
        }
    }
}
