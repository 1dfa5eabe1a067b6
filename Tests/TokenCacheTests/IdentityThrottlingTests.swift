import Foundation
import Logging
import ManualClock
import Testing
import TokenCache
import TokenExchange

/// A caller must not get around a token service's `Retry-After` by asking for scopes the
/// cache has not seen: the window holds for the whole identity.
@Suite struct IdentityThrottling {
    @Test func newScopesSendNothingWhileTheIdentityIsThrottledAndResumeAfter() async throws {
        let f = CacheFixture()
        f.fetcher.answer(.failure(CacheFixture.throttled))  // Retry-After: 30
        _ = try? await f.token()
        #expect(f.fetcher.callCount == 1)
        f.fetcher.answer(.token(lifetime: 3600))
        for i in 0..<30 {
            let error = await #expect(throws: TokenExchangeError.self) { try await f.token(Scope("new-\(i)")) }
            #expect(error?.code == .throttled)
            #expect(error?.isRetryable == true)
            #expect(error?.retryAfter == .seconds(30))
        }
        #expect(f.fetcher.callCount == 1)

        f.clock.advance(by: .seconds(20))
        let later = await #expect(throws: TokenExchangeError.self) { try await f.token(Scope("new-later")) }
        #expect(later?.retryAfter == .seconds(10))  // what is left of the window
        #expect(f.fetcher.callCount == 1)

        f.clock.advance(by: .seconds(10))
        _ = try await f.token(Scope("new-0"))
        _ = try await f.token()
        #expect(f.fetcher.callCount == 3)
    }

    @Test func exchangesQueuedBehindTheThrottledOneAreNotSent() async throws {
        let f = CacheFixture { $0.maxConcurrentExchangesPerIdentity = 1 }
        f.fetcher.answer(.failure(CacheFixture.throttled))
        f.fetcher.hold()
        let codes = await withTaskGroup(of: TokenExchangeError.Code?.self) { group in
            for i in 0..<31 {
                group.addTask {
                    do throws(TokenExchangeError) {
                        _ = try await f.token(Scope("queued-\(i)"))
                        return nil
                    } catch { return error.code }
                }
            }
            await f.fetcher.waitForCalls(1)
            f.fetcher.release()
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(codes.count == 31 && codes.allSatisfy { $0 == .throttled })
        #expect(f.fetcher.callCount == 1)
    }

    @Test func aCachedTokenOfTheThrottledIdentityIsStillServed() async throws {
        let f = CacheFixture()
        let vault = try await f.token(CacheFixture.vault)
        f.fetcher.answer(.failure(TokenExchangeError(code: .throttled, message: "slow down", isRetryable: true, retryAfter: .seconds(120))))
        _ = try? await f.token()
        #expect(try await f.token(CacheFixture.vault) == vault)
        // Asking for more validity than it has left would refresh it: served as is, nothing sent.
        f.clock.advance(by: .seconds(40))
        #expect(try await f.token(CacheFixture.vault, minimumValidity: .seconds(3599)) == vault)
        #expect(f.fetcher.callCount == 2)
    }

    @Test func theRefresherWaitsForTheWindowToo() async throws {
        let f = CacheFixture()
        _ = try await f.token(CacheFixture.vault)
        f.clock.advance(by: .seconds(1990))  // past the vault token's refresh time (half-life ±10 %)
        f.fetcher.answer(.failure(CacheFixture.throttled))
        _ = try? await f.token()
        f.fetcher.answer(.token(lifetime: 3600))
        await f.cache.refreshDue()
        #expect(f.fetcher.callCount == 2)
        f.clock.advance(by: .seconds(30))
        await f.cache.refreshDue()
        #expect(f.fetcher.callCount == 3)
    }

    @Test func otherIdentitiesAreNotThrottled() async throws {
        let f = CacheFixture()
        let other = FakeFetcher(clock: f.clock, name: "other")
        f.cache.register(identity: "other", fetcher: other)
        f.fetcher.answer(.failure(CacheFixture.throttled))
        _ = try? await f.token()
        _ = try await f.cache.token(for: f.key(CacheFixture.vault, identity: "other"))
        #expect(other.callCount == 1)
    }
}
