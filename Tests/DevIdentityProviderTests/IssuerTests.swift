import AsyncHTTPClient
import DevIdentityProvider
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// The issuer side: files on disk, OIDC discovery, JWKS and the minted token's shape.
@Suite struct DevIssuerBehaviour {
    @Test func startWritesStateFilesAndAFirstToken() async throws {
        try await ProviderFixture.with { f in
            let state = f.directory + "/state"
            let mode = try FileManager.default.attributesOfItem(atPath: state)[.posixPermissions] as? Int
            #expect(mode == 0o700)
            #expect(f.endpoints.caFile == state + "/ca.pem")
            #expect(try String(contentsOfFile: f.endpoints.caFile, encoding: .utf8).hasPrefix("-----BEGIN CERTIFICATE-----"))
            let written = try JSONDecoder().decode(
                DevProviderEndpoints.self, from: Data(contentsOf: URL(fileURLWithPath: state + "/provider.json")))
            #expect(written == f.endpoints)
            #expect(f.endpoints.issuerURL.hasPrefix("https://127.0.0.1:"))
            #expect(f.endpoints.audience == "api://AzureADTokenExchange")
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: f.endpoints.tokenFile) == "..data/azure-identity-token")

            let token = try f.currentTokenFile()
            // Written like Go's encoder writes it: no escaped slashes in URLs.
            #expect(!jwtPayloadText(token).contains("\\/"))
            let claims = jwtPayload(token)
            #expect(claims["iss"] as? String == f.endpoints.issuerURL)
            #expect(claims["sub"] as? String == "system:serviceaccount:default:workload")
            #expect(claims["aud"] as? [String] == ["api://AzureADTokenExchange"])
            let iat = try #require(claims["iat"] as? Int)
            #expect(claims["exp"] as? Int == iat + 3600)
            #expect(claims["nbf"] as? Int == iat)
            #expect(claims["jti"] is String)
            let kubernetes = try #require(claims["kubernetes.io"] as? [String: Any])
            #expect(kubernetes["namespace"] as? String == "default")
            #expect((kubernetes["serviceaccount"] as? [String: Any])?["name"] as? String == "workload")
            #expect((kubernetes["pod"] as? [String: Any])?["uid"] is String)
            let header = jwtHeader(token)
            #expect(header["alg"] as? String == "RS256")
            #expect(header["kid"] is String)
        }
    }

    @Test func discoveryAndJWKSAreServedOverVerifiedHTTPS() async throws {
        try await ProviderFixture.with { f in
            let discovery = try await f.send(.GET, f.endpoints.issuerURL + "/.well-known/openid-configuration").json
            #expect(discovery["issuer"] as? String == f.endpoints.issuerURL)
            #expect(discovery["id_token_signing_alg_values_supported"] as? [String] == ["RS256"])
            #expect(discovery["response_types_supported"] as? [String] == ["id_token"])
            #expect(discovery["subject_types_supported"] as? [String] == ["public"])
            let jwksURI = try #require(discovery["jwks_uri"] as? String)
            let keys = try #require(try await f.send(.GET, jwksURI).json["keys"] as? [[String: Any]])
            #expect(keys.count == 1)
            #expect(keys[0]["kty"] as? String == "RSA")
            #expect(keys[0]["use"] as? String == "sig")
            #expect(keys[0]["alg"] as? String == "RS256")
            #expect(keys[0]["kid"] as? String == jwtHeader(try f.currentTokenFile())["kid"] as? String)
            #expect(keys[0]["n"] is String && keys[0]["e"] as? String == "AQAB")
        }
    }

    @Test func clientsWithoutTheCAAreRefused() async throws {
        try await ProviderFixture.with { f in
            let stranger = try ProviderFixture.makeClient(trusting: nil)
            await #expect(throws: (any Error).self) {
                _ = try await stranger.execute(
                    HTTPClientRequest(url: f.endpoints.issuerURL + "/openid/v1/jwks"), timeout: .seconds(10))
            }
            try await stranger.shutdown()
        }
    }

    @Test func mintHonoursOverrides() async throws {
        try await ProviderFixture.with { f in
            let token = try await f.mint([
                "sub": "system:serviceaccount:other:sa", "aud": ["x", "y"], "iss": "https://elsewhere",
                "ttlSeconds": 60, "issuedAtOffsetSeconds": -30, "notBeforeOffsetSeconds": 10,
            ])
            let claims = jwtPayload(token)
            #expect(claims["sub"] as? String == "system:serviceaccount:other:sa")
            #expect(claims["aud"] as? [String] == ["x", "y"])
            #expect(claims["iss"] as? String == "https://elsewhere")
            let iat = try #require(claims["iat"] as? Int)
            #expect(claims["exp"] as? Int == iat + 60)
            #expect(claims["nbf"] as? Int == iat + 40)
        }
    }

    @Test func rotateSwapsTheTokenFile() async throws {
        try await ProviderFixture.with { f in
            let before = jwtPayload(try f.currentTokenFile())["jti"] as? String
            let dataBefore = try FileManager.default.destinationOfSymbolicLink(atPath: f.directory + "/state/tokens/..data")
            let reply = try await f.send(.POST, f.endpoints.issuerURL + "/_dev/rotate")
            #expect(reply.status == .ok)
            let jti = try #require(reply.json["jti"] as? String)
            #expect(jti != before)
            #expect(jwtPayload(try f.currentTokenFile())["jti"] as? String == jti)
            let dataAfter = try FileManager.default.destinationOfSymbolicLink(atPath: f.directory + "/state/tokens/..data")
            #expect(dataAfter != dataBefore)
            #expect(!FileManager.default.fileExists(atPath: f.directory + "/state/tokens/" + dataBefore))
        }
    }
}
