import ExecPlugins
import Foundation
import Testing
import TokenExchange

@Suite("An exec assertion source")
struct ExecAssertionFetcherTests {
    @Test("returns the JWT the plugin printed, with the plugin as its origin")
    func returnsTheAssertion() async throws {
        let jwt = Plugins.jwt(subject: "system:serviceaccount:payments:ledger")
        let fetcher = Plugins.fetcher(Plugins.configuration("assertion-good.sh", environment: ["PLUGIN_TOKEN": jwt]), name: "ledger")
        let (assertion, expiresAt) = try await fetcher.fetchWithExpiry()
        #expect(assertion.jwt == jwt)
        #expect(assertion.origin == "exec:ledger")
        #expect(assertion.claims.subject == "system:serviceaccount:payments:ledger")
        #expect(expiresAt == assertion.claims.expiresAt)
    }

    @Test("without a name the origin is the executable path")
    func originWithoutName() async throws {
        let fetcher = Plugins.fetcher(Plugins.configuration("assertion-good.sh", environment: ["PLUGIN_TOKEN": Plugins.jwt()]), name: "")
        let assertion = try await fetcher.fetch()
        #expect(assertion.origin == Plugins.path("assertion-good.sh"))
    }

    @Test("writes exactly one AssertionRequest line on stdin")
    func sendsTheExactRequest() async throws {
        let scratch = Scratch()
        let configuration = Plugins.configuration(
            "assertion-good.sh", environment: ["PLUGIN_TOKEN": Plugins.jwt(), "REQUEST_FILE": scratch.file("request")])
        _ = try await Plugins.fetcher(configuration).fetch()
        let request = try #require(scratch.read("request"))
        #expect(request == #"{"apiVersion":"tokenbroker/v1","audience":"api://AzureADTokenExchange","kind":"AssertionRequest"}"# + "\n")
    }

    @Test("leaves out the audience when none is configured")
    func omitsAudience() async throws {
        let scratch = Scratch()
        let configuration = Plugins.configuration(
            "assertion-good.sh", environment: ["PLUGIN_TOKEN": Plugins.jwt(), "REQUEST_FILE": scratch.file("request")])
        _ = try await Plugins.fetcher(configuration, audience: nil).fetch()
        #expect(scratch.read("request") == #"{"apiVersion":"tokenbroker/v1","kind":"AssertionRequest"}"# + "\n")
    }

    @Test(
        "the earlier of expiresAt and the JWT's exp wins",
        arguments: [
            // (expiresAt as JSON, seconds from now it means or nil when exp must win)
            (#""2099-01-01T00:00:00Z""#, false),
            ("4070908800", false),
            (#""EARLY_RFC3339""#, true),
            ("EARLY_UNIX", true),
        ])
    func earlierExpiryWins(expiresAt: String, pluginIsEarlier: Bool) async throws {
        let exp = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 3600).rounded())
        let early = exp.addingTimeInterval(-1800)
        let json =
            expiresAt
            .replacingOccurrences(of: "EARLY_RFC3339", with: Timestamp.iso8601(early))
            .replacingOccurrences(of: "EARLY_UNIX", with: String(Int(early.timeIntervalSince1970)))
        let configuration = Plugins.configuration(
            "assertion-good.sh", environment: ["PLUGIN_TOKEN": Plugins.jwt(expiresAt: exp), "PLUGIN_EXPIRES_AT": json])
        let (assertion, expiry) = try await Plugins.fetcher(configuration).fetchWithExpiry()
        #expect(assertion.claims.expiresAt == exp)
        #expect(expiry == (pluginIsEarlier ? early : exp))
    }

    @Test("refuses an assertion that has expired, by exp or by expiresAt")
    func refusesExpired() async throws {
        let stale = Plugins.configuration("assertion-good.sh", environment: ["PLUGIN_TOKEN": Plugins.jwt(expiresAt: Date().addingTimeInterval(-120))])
        let error = try #require(await Plugins.error { try await Plugins.fetcher(stale).fetch() })
        #expect(error.code == .assertionExpired)
        #expect(error.message.contains("exec plugin 'ci'"))

        let expiredByPlugin = Plugins.configuration(
            "assertion-good.sh", environment: ["PLUGIN_TOKEN": Plugins.jwt(), "PLUGIN_EXPIRES_AT": "1000000000"])
        let second = try #require(await Plugins.error { try await Plugins.fetcher(expiredByPlugin).fetch() })
        #expect(second.code == .assertionExpired)
    }

    @Test("a token that is not a JWT is a protocol error that does not echo the token")
    func refusesNonJWT() async throws {
        let configuration = Plugins.configuration("assertion-good.sh", environment: ["PLUGIN_TOKEN": "opaque-secret-value-1234"])
        let error = try #require(await Plugins.error { try await Plugins.fetcher(configuration).fetch() })
        #expect(error.code == .assertionUnavailable)
        #expect(!error.isRetryable)
        #expect(error.message.contains("not a JWT"))
        #expect(!error.message.contains("opaque-secret-value-1234"))
        try await Plugins.expectGoodPluginsStillWork()
    }
}
