import Foundation
import ManualClock
import Testing
import TokenCache
import TokenExchange

@Suite struct ProactiveRefresh {
    // 3600 s tokens without refresh_in are due at half-life ±10 %: between 1620 s and 1980 s.

    @Test func refreshesAfterHalfLifeWhenRequestedWithinTheActiveWindow() async throws {
        let f = CacheFixture { $0.activeWindow = .seconds(600) }
        _ = try await f.token()
        f.clock.advance(by: .seconds(1500))
        await f.cache.refreshDue()
        #expect(f.fetcher.callCount == 1)  // not due yet
        #expect(f.cache.cachedToken(for: f.key()) != nil)  // a caller asks at 1500 s
        f.clock.advance(by: .seconds(500))
        await f.cache.refreshDue()
        #expect(f.fetcher.callCount == 2)
        #expect(f.cache.cachedToken(for: f.key())?.token.value.hasSuffix("-2") == true)
        #expect(f.cache.cachedToken(for: f.key())?.expiresIn == .seconds(3600))
    }

    @Test func idleScopesAreNotRefreshed() async throws {
        let f = CacheFixture { $0.activeWindow = .seconds(600) }
        let first = try await f.token()
        f.clock.advance(by: .seconds(2000))  // due, but last asked 2000 s ago
        await f.cache.refreshDue()
        #expect(f.fetcher.callCount == 1)
        #expect(f.cache.cachedToken(for: f.key())?.token.value == first)
    }

    @Test func refreshInFromTheServiceIsUsed() async throws {
        let f = CacheFixture()
        f.fetcher.answer(.token(lifetime: 86_400, refreshIn: 600))  // due between 540 s and 660 s
        _ = try await f.token()
        f.clock.advance(by: .seconds(500))
        await f.cache.refreshDue()
        #expect(f.fetcher.callCount == 1)
        f.clock.advance(by: .seconds(200))
        await f.cache.refreshDue()
        #expect(f.fetcher.callCount == 2)
    }

    @Test func failedRefreshKeepsServingTheOldTokenAndBacksOff() async throws {
        let f = CacheFixture()
        let first = try await f.token()
        f.clock.advance(by: .seconds(2000))
        f.fetcher.answer(.failure(CacheFixture.throttled))
        await f.cache.refreshDue()
        #expect(f.fetcher.callCount == 2)
        #expect(f.cache.cachedToken(for: f.key())?.token.value == first)
        #expect(f.cache.snapshot(identity: CacheFixture.identity).first?.lastError?.code == .throttled)
        f.clock.advance(by: .seconds(29))
        await f.cache.refreshDue()
        #expect(f.fetcher.callCount == 2)  // Retry-After 30 s
        f.clock.advance(by: .seconds(1))
        f.fetcher.answer(.token(lifetime: 3600))
        await f.cache.refreshDue()
        #expect(f.fetcher.callCount == 3)
        #expect(f.cache.cachedToken(for: f.key())?.token.value != first)
    }

    @Test func runRefreshesOnEachTickUntilCancelled() async throws {
        let f = CacheFixture()
        _ = try await f.token()
        let runner = Task { try await f.cache.run() }
        await f.clock.waitForSleepers(1)
        f.clock.advance(by: .seconds(2000))
        await f.fetcher.waitForCalls(2)
        runner.cancel()
        try await runner.value
        #expect(f.fetcher.callCount == 2)
        #expect(f.clock.sleeperCount == 0)
    }
}

@Suite struct ScopeLimit {
    static func scope(_ i: Int) -> Scope { Scope("api://app-\(i)/.default") }

    @Test func keepsOnlyTheMostRecentlyRequestedScopes() async throws {
        let f = CacheFixture { $0.maxScopesPerIdentity = 3 }
        for i in 0..<10 {
            _ = try await f.token(Self.scope(i))
            f.clock.advance(by: .seconds(1))
        }
        let snapshot = f.cache.snapshot(identity: CacheFixture.identity)
        #expect(snapshot.count <= 3)
        #expect(snapshot.map(\.scope) == [Self.scope(9), Self.scope(8), Self.scope(7)])
        #expect(f.cache.count == 3)
        _ = try await f.token(Self.scope(9))
        #expect(f.fetcher.callCount == 10)
        _ = try await f.token(Self.scope(0))  // evicted: fetched again
        #expect(f.fetcher.callCount == 11)
    }

    @Test func aHitCountsAsARecentRequest() async throws {
        let f = CacheFixture { $0.maxScopesPerIdentity = 3 }
        for i in 0..<3 {
            _ = try await f.token(Self.scope(i))
            f.clock.advance(by: .seconds(1))
        }
        _ = try await f.token(Self.scope(0))  // a hit makes scope 0 the most recent
        f.clock.advance(by: .seconds(1))
        _ = try await f.token(Self.scope(3))
        #expect(f.cache.snapshot(identity: CacheFixture.identity).map(\.scope) == [Self.scope(3), Self.scope(0), Self.scope(2)])
    }

    @Test func limitIsPerIdentity() async throws {
        let f = CacheFixture { $0.maxScopesPerIdentity = 2 }
        f.cache.register(identity: "other", fetcher: FakeFetcher(clock: f.clock))
        for i in 0..<2 {
            _ = try await f.token(Self.scope(i))
            _ = try await f.cache.token(for: f.key(Self.scope(i), identity: "other"))
        }
        #expect(f.cache.count == 4)
    }
}

@Suite struct IdentityRegistration {
    @Test func removeDropsTheIdentityAndItsTokens() async throws {
        let f = CacheFixture()
        _ = try await f.token()
        f.cache.remove(identity: CacheFixture.identity)
        #expect(f.cache.cachedToken(for: f.key()) == nil)
        #expect(f.cache.snapshot(identity: CacheFixture.identity).isEmpty)
        #expect(f.cache.count == 0)
        let error = await #expect(throws: TokenExchangeError.self) { try await f.token() }
        #expect(error?.code == .internal)
    }

    @Test func aFetchFinishingAfterRemovalIsDropped() async throws {
        let f = CacheFixture()
        f.fetcher.hold()
        let pending = Task { try await f.token() }
        await f.fetcher.waitForCalls(1)
        f.cache.remove(identity: CacheFixture.identity)
        f.fetcher.release()
        _ = try await pending.value  // the waiting caller still gets its token
        #expect(f.cache.count == 0)
        #expect(f.cache.cachedToken(for: f.key()) == nil)
    }

    @Test func reRegisteringWithKeepTokensKeepsThem() async throws {
        let f = CacheFixture()
        let first = try await f.token()
        let replacement = FakeFetcher(clock: f.clock, name: "new")
        f.cache.register(identity: CacheFixture.identity, fetcher: replacement, keepTokens: true)
        #expect(try await f.token() == first)
        #expect(replacement.callCount == 0)
        f.clock.advance(by: .seconds(3400))  // the next fetch goes to the new fetcher
        #expect(try await f.token().hasPrefix("new-"))
        #expect(replacement.callCount == 1 && f.fetcher.callCount == 1)
    }

    @Test func reRegisteringWithoutKeepTokensDropsThem() async throws {
        let f = CacheFixture()
        _ = try await f.token()
        let replacement = FakeFetcher(clock: f.clock, name: "new")
        f.cache.register(identity: CacheFixture.identity, fetcher: replacement)
        #expect(f.cache.count == 0)
        #expect(try await f.token().hasPrefix("new-"))
        #expect(replacement.callCount == 1)
    }

    /// A reload that re-registers an identity (another app, other rules) while an exchange
    /// of the old registration is in flight: its token must not land in the new entries.
    @Test func aFetchFromBeforeReRegistrationDoesNotFillTheNewEntry() async throws {
        let f = CacheFixture()
        f.fetcher.hold()
        let old = Task { try await f.token() }
        await f.fetcher.waitForCalls(1)
        let replacement = FakeFetcher(clock: f.clock, name: "new")
        replacement.hold()
        f.cache.register(identity: CacheFixture.identity, fetcher: replacement)
        let new = Task { try await f.token() }
        await replacement.waitForCalls(1)
        f.fetcher.release()  // the old exchange finishes first
        #expect(try await old.value.hasPrefix("tok-"), "its own caller still gets it")
        #expect(f.cache.cachedToken(for: f.key()) == nil, "but it is not cached under the new registration")
        replacement.release()
        #expect(try await new.value.hasPrefix("new-"))
        #expect(f.cache.cachedToken(for: f.key())?.token.value.hasPrefix("new-") == true)
    }
}
