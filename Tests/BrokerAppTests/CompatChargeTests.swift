import BrokerServer
import Foundation
import Synchronization
import Testing
import TokenBrokerProtocol
import TokenCache
import TokenExchange

@testable import BrokerApp

/// The token service's side: every fetch answered at once with a token valid for an hour.
private struct InstantFetcher: TokenFetching {
    func fetchToken(for scope: Scope) async throws(TokenExchangeError) -> AccessToken {
        AccessToken(value: "t-\(scope.value)", issuedAt: Date(), expiresAt: Date().addingTimeInterval(3600))
    }
}

/// The compatibility endpoints charge the per-uid bucket once per request that makes
/// upstream work, however many identities they try for it.
@Suite("Compat endpoints and the per-uid bucket")
struct CompatChargeTests {
    static let caller = PeerCredentials(pid: 77, uid: 1000, gid: 1000)
    static let burst = 10

    @Test(
        "a miss answered with compat.defaultIdentity after identity_required is charged once, and says how to name an identity when there is no default"
    )
    func defaultIdentityRetryIsChargedOnce() async throws {
        let token = BrokerFixture.jwt(expiresAt: Date().addingTimeInterval(3600))
        let limiter = RateLimiter(ratePerSecond: 1, burst: Self.burst, clock: ContinuousClock())
        let fixture = try BrokerFixture(
            [(name: "app", token: token, allow: [.uid(Self.caller.uid)]), (name: "second", token: token, allow: [.uid(Self.caller.uid)])],
            rateLimiter: limiter)
        defer { fixture.remove() }
        await fixture.readSources()
        for name in ["app", "second"] { fixture.cache.register(identity: name, fetcher: InstantFetcher()) }
        let defaultIdentity = LiveValue<String?>("second")
        let endpoints = CompatEndpoints(
            broker: fixture.broker, settings: CompatSettings(), defaultIdentity: defaultIdentity, identityHeader: "secret")
        let imds = HTTPServiceRequest(
            method: "GET", path: CompatEndpoints.imdsPath,
            query: [("api-version", "2018-02-01"), ("resource", "api://charged")], headers: [("Host", "127.0.0.1"), ("Metadata", "true")])

        // Read before the request: the bucket refills nothing at an instant before its last charge,
        // so what is left of it afterwards counts exactly what the request was charged.
        let before = ContinuousClock.now
        let answered = await endpoints.respond(to: imds, from: Self.caller)
        #expect(answered.status == 200, "\(answered.body)")
        #expect(answered.body.contains("t-api://charged"), "served with the default identity")
        var left = 0
        while limiter.admit(uid: Self.caller.uid, at: before) == nil { left += 1 }
        #expect(left == Self.burst - 1, "one miss, one charge: \(Self.burst - left) charged")

        // Without a default, the caller is told how an SDK names an identity, in the compat words.
        defaultIdentity.current = nil
        let ambiguous = HTTPServiceRequest(
            method: "GET", path: CompatEndpoints.imdsPath,
            query: [("api-version", "2018-02-01"), ("resource", "api://other")], headers: [("Host", "127.0.0.1"), ("Metadata", "true")])
        let refused = await endpoints.respond(to: ambiguous, from: Self.caller)
        #expect(refused.status == 400, "\(refused.body)")
        #expect(refused.body.contains("pass client_id (AZURE_CLIENT_ID for most SDKs) or set compat.defaultIdentity"), "\(refused.body)")
        #expect(!refused.body.contains("'identity'"), "the socket's advice is not an SDK's: \(refused.body)")
    }
}
