import ManualClock
import Testing
import TokenCache
import TokenExchange

/// Shutdown: exchanges in flight get a grace period, then their callers are answered.
@Suite struct CacheShutdown {
    @Test func anExchangeThatFinishesWithinTheGraceIsServed() async throws {
        let f = CacheFixture()
        f.fetcher.hold()
        async let token = f.token()
        await f.fetcher.waitForCalls(1)
        f.cache.beginShutdown()
        await f.clock.waitForSleepers(1)
        f.fetcher.release()  // the token service answers within the grace
        #expect(try await token == "tok-https://storage.azure.com/.default-1")
    }

    @Test func aHungExchangeIsAbandonedAfterTheGraceAndNothingStartsAfter() async throws {
        let f = CacheFixture()
        f.fetcher.hold()
        let waiting = Task { () async throws(TokenExchangeError) -> CachedToken in try await f.cache.token(for: f.key()) }
        await f.fetcher.waitForCalls(1)
        f.cache.beginShutdown()
        await f.clock.waitForSleepers(1)
        f.clock.advance(by: .seconds(1))
        let error = await #expect(throws: TokenExchangeError.self) { try await waiting.value }
        #expect(error?.code == .shuttingDown)
        #expect(error?.isRetryable == true)
        let late = await #expect(throws: TokenExchangeError.self) { try await f.cache.token(for: f.key(CacheFixture.vault)) }
        #expect(late?.code == .shuttingDown, "nothing starts after shutdown")
        #expect(f.fetcher.callCount == 1)
        f.fetcher.release()
    }
}
