import AsyncHTTPClient
import Foundation
import Logging
import NIOPosix
import Testing

@testable import DevIdentityProvider

/// Entra's rules checked without servers: credential matching, time formats, form decoding.
@Suite struct EntraRules {
    private static let issuer = "https://127.0.0.1:8443"
    private static let audience = "api://AzureADTokenExchange"
    private static let credentials = ["system:serviceaccount:default:workload", "system:serviceaccount:ci:runner"].map {
        EntraEmulator.FederatedCredential(issuer: issuer, subject: $0, audience: audience)
    }

    private func code(issuer: String = issuer, subject: String, audiences: [String] = [audience]) -> Int? {
        do {
            try EntraEmulator.matchFederatedCredential(Self.credentials, issuer: issuer, subject: subject, audiences: audiences)
            return nil
        } catch {
            return error.code
        }
    }

    @Test func exactMatchesAreAccepted() {
        #expect(code(subject: "system:serviceaccount:default:workload") == nil)
        #expect(code(subject: "system:serviceaccount:ci:runner", audiences: ["other", Self.audience]) == nil)
    }

    @Test func oneDifferingClaimNamesThatClaim() {
        #expect(code(issuer: Self.issuer + "/", subject: "system:serviceaccount:default:workload") == 700211)
        #expect(code(subject: "system:serviceaccount:default:workload", audiences: ["api://azureadtokenexchange"]) == 700212)
        #expect(code(subject: "SYSTEM:serviceaccount:default:workload") == 700213)
    }

    @Test func severalDifferingClaimsGiveTheGeneralCode() {
        #expect(code(issuer: "https://other", subject: "x") == 70021)
        #expect(code(subject: "x", audiences: ["y"]) == 70021)
    }

    @Test func ambiguousNearMissesGiveTheGeneralCode() {
        // One field away from two credentials, by a different field each time.
        let mixed = [
            EntraEmulator.FederatedCredential(issuer: "https://a", subject: "s1", audience: Self.audience),
            EntraEmulator.FederatedCredential(issuer: "https://b", subject: "s2", audience: Self.audience),
        ]
        #expect(throws: EntraError.self) {
            try EntraEmulator.matchFederatedCredential(mixed, issuer: "https://a", subject: "s2", audiences: [Self.audience])
        }
        do {
            try EntraEmulator.matchFederatedCredential(mixed, issuer: "https://a", subject: "s2", audiences: [Self.audience])
        } catch {
            #expect(error.code == 70021)
        }
    }

    @Test func timestampsUseEntrasFormats() {
        let date = Date(timeIntervalSince1970: 1_795_914_123.456_789_1)
        #expect(EntraTime.trailer(date) == "2026-11-29 01:02:03Z")
        #expect(EntraTime.precise(date).hasPrefix("2026-11-29T01:02:03.4567"))
        #expect(EntraTime.precise(date).count == "2026-11-29T01:02:03.4567891Z".count)
    }

    @Test func formFieldsKeepOrderAndDecode() {
        let form = FormFields(Array("b=1&a=x%2Fy+z&b=2&empty=&flag".utf8))
        #expect(form.names == ["b", "a", "b", "empty", "flag"])
        #expect(form["a"] == "x/y z")
        #expect(form["b"] == "1")
        #expect(form["empty"] == "")
        #expect(form["flag"] == "")
        #expect(form["missing"] == nil)
    }

    @Test func unreachableIssuersAreAnOIDCEndpointFailure() async throws {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
        let cache = OIDCKeyCache(client: client, logger: quietLogger)
        for issuer in ["https://127.0.0.1:1", "http://127.0.0.1:1"] {
            await #expect {
                try await cache.verify("a.b.c", kid: "kid", issuer: issuer)
            } throws: { error in
                (error as? EntraError)?.code == 90061
            }
        }
        try await client.shutdown()
    }

    @Test func invalidConfigurationIsRejectedAtStart() async throws {
        var configuration = DevIdentityProviderConfiguration(stateDirectory: "/nonexistent-never-created")
        configuration.rotationInterval = .zero
        let provider = DevIdentityProvider(configuration: configuration, logger: quietLogger)
        await #expect {
            _ = try await provider.start()
        } throws: { error in
            (error as? DevIdentityProviderError)?.code == .invalidConfiguration
        }
        #expect(!FileManager.default.fileExists(atPath: "/nonexistent-never-created"))
    }
}
