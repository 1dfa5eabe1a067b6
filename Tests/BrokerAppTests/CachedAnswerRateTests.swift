import BrokerServer
import Foundation
import Synchronization
import Testing
import TokenBrokerProtocol
import TokenCache
import TokenExchange

@testable import BrokerApp

/// The token service's side of the fixture: answers every fetch at once with a token
/// valid for an hour, and counts the fetches (the upstream work the bucket is about).
private final class CountingFetcher: TokenFetching {
    private let fetches = Atomic<Int>(0)
    var count: Int { fetches.load(ordering: .relaxed) }

    func fetchToken(for scope: Scope) async throws(TokenExchangeError) -> AccessToken {
        fetches.add(1, ordering: .relaxed)
        return AccessToken(value: "t-\(scope.value)", issuedAt: Date(), expiresAt: Date().addingTimeInterval(3600))
    }
}

/// `limits.requestsPerSecondPerUID` charges only requests that make upstream work.
@Suite("The per-uid bucket and cached answers")
struct CachedAnswerRateTests {
    static let caller = PeerCredentials(pid: 77, uid: 1000, gid: 1000)
    static let burst = 3

    private static func request(_ scope: String, identity: String = "app", minValidity: Int? = nil) -> BrokerRequest {
        BrokerRequest(op: "token", scope: scope, identity: identity, minValiditySeconds: minValidity)
    }

    /// A broker whose bucket allows one request a second after a burst of 3 (any charged
    /// request beyond the first few is refused, however slowly the test runs), serving
    /// `app` to the caller and `other` to someone else.
    private static func fixture() async throws -> (BrokerFixture, CountingFetcher) {
        let token = BrokerFixture.jwt(expiresAt: Date().addingTimeInterval(3600))
        let fixture = try BrokerFixture(
            [(name: "app", token: token, allow: [.uid(caller.uid)]), (name: "other", token: token, allow: [.uid(5000)])],
            rateLimiter: RateLimiter(ratePerSecond: 1, burst: burst, clock: ContinuousClock()))
        await fixture.readSources()
        let fetcher = CountingFetcher()
        fixture.cache.register(identity: "app", fetcher: fetcher)
        return (fixture, fetcher)
    }

    @Test("a uid asking for a cached token 1,000 times its burst is never throttled, on the socket or the compat path; refusals are not charged")
    func cachedAnswersAreFree() async throws {
        let (fixture, fetcher) = try await Self.fixture()
        defer { fixture.remove() }
        let broker = fixture.broker
        let cached = Self.request("api://cached/.default")

        // Refusals do no upstream work: not charged, on the socket or the compat path.
        for _ in 0..<(20 * Self.burst) {
            #expect(broker.immediate(Self.request("has space"), from: Self.caller)?.response.error?.code == "bad_request")
            #expect(broker.immediate(Self.request("s", identity: "other"), from: Self.caller)?.response.error?.code == "forbidden")
            if case .failure(let error) = await broker.compatToken(for: Self.request("s", identity: "nope"), from: Self.caller) {
                #expect(error.code == "forbidden")
            } else {
                Issue.record("an unknown identity was served")
            }
        }
        // The first request for the scope is a miss (charged: one of the burst).
        let first = try await broker.compatToken(for: cached, from: Self.caller).get()
        #expect(first.key.scope.value == "api://cached/.default" && fetcher.count == 1)

        // Cached answers: first answers and a connection's repeats on the socket, and the
        // compatibility endpoints' path.
        let n = 1000 * Self.burst
        var outcomes: [String: Int] = [:]
        for index in 0..<n {
            let answer = try #require(broker.immediate(cached, from: Self.caller), "a cached token is answered at once")
            outcomes[answer.response.error?.code ?? "ok", default: 0] += 1
            if index % 100 == 0, let check = answer.check {
                for _ in 0..<100 {
                    switch check.renew(Self.caller, 1) {
                    case .holds: outcomes["repeated", default: 0] += 1
                    // A repeat holds for the rest of its second of `expiresIn`; on a loaded machine that
                    // second can end mid-loop, and the connection then asks afresh: not charged either.
                    case .expired:
                        let fresh = broker.immediate(cached, from: Self.caller)?.response.error?.code
                        outcomes[fresh.map { "repeated \($0)" } ?? "repeated", default: 0] += 1
                    case .instead(let response): outcomes["repeated \(response.error?.code ?? "refused")", default: 0] += 1
                    }
                }
            }
        }
        for _ in 0..<n {
            switch await broker.compatToken(for: cached, from: Self.caller) {
            case .success: outcomes["compat ok", default: 0] += 1
            case .failure(let error): outcomes["compat \(error.code)", default: 0] += 1
            }
        }
        #expect(outcomes == ["ok": n, "repeated": n, "compat ok": n], "\(outcomes)")
        #expect(fetcher.count == 1, "no upstream work for cached answers")
    }

    @Test("misses and forced refreshes are charged, on the socket and the compat path; with the bucket empty, the cached token is still served")
    func missesAreCharged() async throws {
        let (fixture, fetcher) = try await Self.fixture()
        defer { fixture.remove() }
        let broker = fixture.broker
        let cached = Self.request("api://cached/.default")
        _ = try await broker.compatToken(for: cached, from: Self.caller).get()

        // New scopes, and a minimum the cached token cannot meet: asked in one go, only
        // the burst (and what refilled) passes.
        var misses: [String] = []
        for index in 0..<(4 * Self.burst) {
            let miss = index % 2 == 0 ? Self.request("api://miss-\(index)/.default") : Self.request("api://cached/.default", minValidity: 86_400)
            let answer = broker.immediate(miss, from: Self.caller)?.response
            misses.append(answer == nil ? "exchange" : answer?.error?.code ?? "ok")
            if let error = answer?.error {
                #expect(error.retryable == true && (error.retryAfter ?? 0) >= 1, "\(error)")
            }
        }
        #expect(misses.contains("throttled") && misses.filter { $0 == "exchange" }.count <= Self.burst + 1, "\(misses)")
        #expect(Set(misses).isSubset(of: ["exchange", "throttled"]), "\(misses)")
        // The compatibility endpoints' misses share the bucket; a throttled one does no fetch.
        var compat: WireError?
        var fetchesBefore = fetcher.count
        // Until one is throttled: each miss awaits a fetch, and a starved pool could let the
        // bucket refill (1/s) between a few of them, never between forty.
        for index in 0..<(40 * Self.burst) where compat == nil {
            fetchesBefore = fetcher.count
            if case .failure(let error) = await broker.compatToken(for: Self.request("api://compat-miss-\(index)/.default"), from: Self.caller) {
                compat = error
            }
        }
        #expect(compat?.code == "throttled" && (compat?.retryAfter ?? 0) >= 1, "\(String(describing: compat))")
        #expect(fetcher.count == fetchesBefore, "the throttled miss made no fetch")
        // With the bucket empty, the cached token is served on both paths.
        #expect(broker.immediate(cached, from: Self.caller)?.response.ok == true)
        #expect((try? await broker.compatToken(for: cached, from: Self.caller).get()) != nil)
    }
}
