import Foundation
import Testing

/// RFC 8693 token exchange against the dev provider's strict STS endpoint.
@Suite("RFC 8693 token exchange")
struct RFC8693Tests {
    static let scope = "https://api.example/.default"

    static let intruder = "system:serviceaccount:default:intruder"

    @Test("the subject token is exchanged at the STS; a refused subject gives an error naming it and the fix")
    func exchangeAndRefusal() async throws {
        try await Scenario.run(identities: { directory, provider in
            let intruderToken = try await provider.mint(sub: Self.intruder, aud: [provider.endpoints.stsAudience])
            let exchange =
                "{ rfc8693: { tokenEndpoint: \"\(provider.endpoints.stsTokenEndpoint)\", audience: https://api.example, requestedTokenType: \"urn:ietf:params:oauth:token-type:access_token\" } }"
            return [
                BrokerDaemon.Identity(name: "sts", tokenFile: provider.endpoints.stsTokenFile, exchangeYAML: exchange),
                // The Entra-audience token: the STS refuses it.
                BrokerDaemon.Identity(name: "wrong-audience", tokenFile: provider.endpoints.tokenFile, exchangeYAML: exchange),
                // The right audience, but a subject the STS does not trust.
                BrokerDaemon.Identity(
                    name: "intruder", tokenFile: try Scenario.writeTokenFile(intruderToken, in: directory, name: "intruder-token"),
                    exchangeYAML: exchange),
            ]
        }) { scenario in
            let reply = try await scenario.broker.request(#"{"op":"token","identity":"sts","scope":"\#(Self.scope)"}"#)
            #expect(reply.ok, "\(reply)")
            #expect(reply.token?.hasPrefix("ey") == true)
            let again = try await scenario.broker.request(#"{"op":"token","identity":"sts","scope":"\#(Self.scope)"}"#)
            #expect(again.token == reply.token, "served from the cache")

            let refused = try await scenario.broker.request(#"{"op":"token","identity":"wrong-audience","scope":"\#(Self.scope)"}"#)
            #expect(refused.errorCode == "upstream_rejected", "\(refused)")
            #expect(refused.errorMessage.contains("invalid_grant"), "\(refused.errorMessage)")
            #expect(refused.errorMessage.contains("system:serviceaccount:default:workload"), "the refused subject is named: \(refused.errorMessage)")
            let intruder = try await scenario.broker.request(#"{"op":"token","identity":"intruder","scope":"\#(Self.scope)"}"#)
            #expect(intruder.errorCode == "upstream_rejected", "\(intruder)")
            #expect(intruder.errorMessage.contains(Self.intruder), "the refused subject is named: \(intruder.errorMessage)")
            let stats = try await scenario.provider.stats()
            #expect(stats.tokenRequests == 3, "one exchange each; the refusals are not retried at once")
        }
    }
}
