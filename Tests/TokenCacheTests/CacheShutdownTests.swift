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

    @Test func eachHungExchangeIsAbandonedAfterItsOwnGrace() async throws {
        let f = CacheFixture()
        f.fetcher.hold()
        let first = Task { () async throws(TokenExchangeError) -> CachedToken in try await f.cache.token(for: f.key()) }
        await f.fetcher.waitForCalls(1)
        f.cache.beginShutdown()
        await f.clock.waitForSleepers(1)
        f.clock.advance(by: .milliseconds(500))
        // A draining connection asks for another scope: it gets a grace of its own.
        let second = Task { () async throws(TokenExchangeError) -> CachedToken in try await f.cache.token(for: f.key(CacheFixture.vault)) }
        await f.fetcher.waitForCalls(2)
        f.clock.advance(by: .milliseconds(1000))  // the first one's grace (1.5 s) is over
        let error = await #expect(throws: TokenExchangeError.self) { try await first.value }
        #expect(error?.code == .shuttingDown)
        #expect(error?.isRetryable == true)
        #expect(f.fetcher.callCount == 2)
        for _ in 0..<5 {
            await f.clock.waitForSleepers(1)
            f.clock.advance(by: .milliseconds(100))
        }
        let late = await #expect(throws: TokenExchangeError.self) { try await second.value }
        #expect(late?.code == .shuttingDown)
        f.fetcher.release()
    }
}
