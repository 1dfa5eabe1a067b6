import DevIdentityProvider
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// The emulator's test controls: planned faults, injected latency and request statistics.
@Suite struct EntraTestControls {
    @Test func plannedFaultsFailTheNextRequestsThenServiceRecovers() async throws {
        try await ProviderFixture.with { f in
            let token = try f.currentTokenFile()
            let planned = try await f.postJSON(
                f.endpoints.authorityHost + "/_dev/faults",
                ["status": 429, "count": 2, "retryAfterSeconds": 7, "body": "Too Many Requests"])
            #expect(planned.status == .ok)
            for _ in 0..<2 {
                let throttled = try await f.requestToken(assertion: token)
                #expect(throttled.status == .tooManyRequests)
                #expect(throttled.headers.first(name: "Retry-After") == "7")
                #expect(throttled.text == "Too Many Requests")
            }
            _ = try await f.postJSON(f.endpoints.authorityHost + "/_dev/faults", ["status": 500, "count": 1])
            let failed = try await f.requestToken(assertion: token)
            #expect(failed.status == .internalServerError)
            #expect(failed.json["error"] as? String == "server_error")
            #expect(try await f.requestToken(assertion: token).status == .ok)

            _ = try await f.postJSON(f.endpoints.authorityHost + "/_dev/faults", ["status": 503, "count": 5])
            let cleared = try await f.send(.DELETE, f.endpoints.authorityHost + "/_dev/faults")
            #expect(cleared.status == .ok)
            #expect(try await f.requestToken(assertion: token).status == .ok)

            let stats = try await f.stats()
            #expect(stats["tokenRequests"] as? Int == 5)
            let statuses = (stats["requests"] as? [[String: Any]])?.compactMap { $0["status"] as? Int }
            #expect(statuses == [429, 429, 500, 200, 200])
        }
    }

    @Test func statsDescribeRequestsWithoutKeepingAssertions() async throws {
        try await ProviderFixture.with { f in
            let token = try f.currentTokenFile()
            _ = try await f.requestToken(assertion: token)
            _ = try await f.requestToken(assertion: token, scope: "https://vault.azure.net/.default")
            let wrong = try await f.mint(["sub": "system:serviceaccount:default:nope"])
            _ = try await f.requestToken(assertion: wrong)

            let reply = try await f.send(.GET, f.endpoints.authorityHost + "/_dev/stats")
            #expect(!reply.text.contains(token) && !reply.text.contains(wrong))
            let stats = reply.json
            #expect(stats["tokenRequests"] as? Int == 3)
            #expect(
                stats["byScope"] as? [String: Int] == [
                    "https://storage.azure.com/.default": 2, "https://vault.azure.net/.default": 1,
                ])
            let requests = try #require(stats["requests"] as? [[String: Any]])
            #expect(requests.count == 3)
            let first = requests[0]
            #expect(first["fields"] as? [String] == ["client_id", "scope", "client_assertion_type", "client_assertion", "grant_type"])
            #expect(first["clientId"] as? String == f.endpoints.clientId)
            #expect(first["grantType"] as? String == "client_credentials")
            #expect(first["clientAssertionType"] as? String == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            #expect((first["assertionSha256"] as? String)?.count == 64)
            #expect(first["assertionSubject"] as? String == "system:serviceaccount:default:workload")
            #expect(first["assertionIssuer"] as? String == f.endpoints.issuerURL)
            #expect(first["assertionJti"] as? String == jwtPayload(token)["jti"] as? String)
            #expect(first["status"] as? Int == 200)
            #expect(first["errorCode"] == nil)
            #expect(requests[2]["status"] as? Int == 400)
            #expect(requests[2]["errorCode"] as? Int == 700213)
        }
    }

    @Test func injectedLatencyDelaysTokenAnswers() async throws {
        try await ProviderFixture.with { f in
            let token = try f.currentTokenFile()
            let set = try await f.postJSON(f.endpoints.authorityHost + "/_dev/latency", ["milliseconds": 300])
            #expect(set.status == .ok)
            let clock = ContinuousClock()
            let started = clock.now
            #expect(try await f.requestToken(assertion: token).status == .ok)
            #expect(started.duration(to: clock.now) >= .milliseconds(300))
        }
    }

    @Test func unknownRoutesAreNotFound() async throws {
        try await ProviderFixture.with { f in
            #expect(try await f.send(.GET, f.endpoints.authorityHost + "/nope").status == .notFound)
            #expect(try await f.send(.GET, f.endpoints.issuerURL + "/nope").status == .notFound)
            let badFault = try await f.postJSON(f.endpoints.authorityHost + "/_dev/faults", ["count": 1])
            #expect(badFault.status == .badRequest)
        }
    }
}
