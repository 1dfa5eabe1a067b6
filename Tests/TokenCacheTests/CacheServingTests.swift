import Foundation
import ManualClock
import Testing
import TokenCache
import TokenExchange

@Suite struct CacheHitsAndMisses {
    @Test func firstRequestFetchesAndLaterOnesHit() async throws {
        let f = CacheFixture()
        #expect(f.cache.cachedToken(for: f.key()) == nil)
        let first = try await f.token()
        let second = try await f.token()
        #expect(first == "tok-https://storage.azure.com/.default-1")
        #expect(second == first)
        #expect(f.fetcher.callCount == 1)
        #expect(f.cache.cachedToken(for: f.key())?.token.value == first)
        #expect(f.cache.count == 1)
    }

    @Test func expiresInCountsDownOnTheClock() async throws {
        let f = CacheFixture()
        let served = try await f.cache.token(for: f.key())
        #expect(served.expiresIn == .seconds(3600))
        #expect(served.key == f.key())
        f.clock.advance(by: .seconds(600))
        #expect(f.cache.cachedToken(for: f.key())?.expiresIn == .seconds(3000))
        #expect(f.cache.snapshot(identity: CacheFixture.identity).first?.expiresIn == .seconds(3000))
    }

    @Test func differentScopesAreFetchedSeparately() async throws {
        let f = CacheFixture()
        let storage = try await f.token(CacheFixture.storage)
        let vault = try await f.token(CacheFixture.vault)
        #expect(storage != vault)
        #expect(f.fetcher.calls == [CacheFixture.storage, CacheFixture.vault])
        #expect(try await f.token(CacheFixture.storage) == storage)
        #expect(try await f.token(CacheFixture.vault) == vault)
        #expect(f.fetcher.callCount == 2)
        #expect(f.cache.count == 2)
    }

    @Test func identitiesDoNotShareTokens() async throws {
        let f = CacheFixture()
        let other = FakeFetcher(clock: f.clock, name: "other")
        f.cache.register(identity: "other", fetcher: other)
        let mine = try await f.token()
        let theirs = try await f.cache.token(for: f.key(identity: "other")).token.value
        #expect(mine != theirs)
        #expect(f.fetcher.callCount == 1 && other.callCount == 1)
    }

    @Test func unknownIdentityIsAnInternalError() async {
        let f = CacheFixture()
        let error = await #expect(throws: TokenExchangeError.self) { try await f.cache.token(for: f.key(identity: "nobody")) }
        #expect(error?.code == .internal)
        #expect(error?.message.contains("nobody") == true)
        #expect(f.fetcher.callCount == 0)
    }
}

@Suite struct SingleFlight {
    @Test func concurrentMissesShareOneFetch() async throws {
        let f = CacheFixture()
        f.fetcher.hold()
        let values = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<100 { group.addTask { try await f.token() } }
            await f.fetcher.waitForCalls(1)
            f.fetcher.release()
            var values: [String] = []
            for try await value in group { values.append(value) }
            return values
        }
        #expect(values.count == 100)
        #expect(Set(values) == ["tok-https://storage.azure.com/.default-1"])
        #expect(f.fetcher.callCount == 1)
    }

    @Test func callersJoiningAHeldFetchAllSeeItsFailure() async throws {
        let f = CacheFixture()
        f.fetcher.answer(.failure(CacheFixture.unavailable))
        f.fetcher.hold()
        let codes = await withTaskGroup(of: TokenExchangeError.Code?.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    do throws(TokenExchangeError) { _ = try await f.token(); return nil } catch { return error.code }
                }
            }
            await f.fetcher.waitForCalls(1)
            f.fetcher.release()
            var codes: [TokenExchangeError.Code?] = []
            for await code in group { codes.append(code) }
            return codes
        }
        #expect(codes.count == 20)
        #expect(codes.allSatisfy { $0 == .upstreamUnavailable })
        #expect(f.fetcher.callCount == 1)  // late callers are inside the backoff window
    }
}

@Suite struct ExchangeConcurrency {
    /// A burst of new scopes is a queue on the token service, not a burst.
    @Test func anIdentityRunsAtMostItsLimitOfExchangesAtOnce() async throws {
        let f = CacheFixture { $0.maxConcurrentExchangesPerIdentity = 3 }
        f.fetcher.hold()
        let values = try await withThrowingTaskGroup(of: String.self) { group in
            for n in 0..<20 { group.addTask { try await f.token(Scope("https://app-\(n).example/.default")) } }
            await f.fetcher.waitForCalls(3)
            // Time for any exchange beyond the limit to start (it must not).
            try await Task.sleep(for: .milliseconds(200))
            #expect(f.fetcher.callCount == 3)
            f.fetcher.release()
            var values: [String] = []
            for try await value in group { values.append(value) }
            return values
        }
        #expect(Set(values).count == 20)
        #expect(f.fetcher.callCount == 20)
        #expect(f.fetcher.mostInFlight == 3)
    }
}

@Suite struct MinimumValidity {
    @Test func tokenWithTooLittleValidityLeftIsRefetched() async throws {
        let f = CacheFixture()
        let first = try await f.token()
        f.clock.advance(by: .seconds(3000))  // 600 s left ≥ 300 s default
        #expect(try await f.token() == first)
        f.clock.advance(by: .seconds(400))  // 200 s left < 300 s
        #expect(f.cache.cachedToken(for: f.key()) == nil)
        let second = try await f.token()
        #expect(second != first)
        #expect(f.fetcher.callCount == 2)
        #expect(f.cache.cachedToken(for: f.key())?.expiresIn == .seconds(3600))
    }

    @Test func requestCanAskForMoreValidity() async throws {
        let f = CacheFixture()
        let first = try await f.token()
        #expect(try await f.token(minimumValidity: .seconds(3600)) == first)
        #expect(f.cache.cachedToken(for: f.key(), minimumValidity: .seconds(3601)) == nil)
        // Within the minimum refresh interval the fresh token is served; after it, a refresh happens.
        #expect(try await f.token(minimumValidity: .seconds(3601)) == first)
        f.clock.advance(by: .seconds(31))
        let second = try await f.token(minimumValidity: .seconds(3601))
        #expect(second != first)
        #expect(f.fetcher.callCount == 2)
    }

    /// A caller asking for more validity than any token has must not turn every request
    /// into an upstream exchange (one caller could then throttle everyone): a token just
    /// obtained is served rather than fetched again (brief §8: at most one attempt per 30 s).
    @Test func askingForMoreThanATokenLifetimeDoesNotBypassTheCache() async throws {
        let f = CacheFixture()
        for _ in 0..<10 { _ = try await f.token(minimumValidity: .seconds(7200)) }
        #expect(f.fetcher.callCount == 1)
    }

    @Test func shortLivedTokensAreStillCached() async throws {
        let f = CacheFixture()
        f.fetcher.answer(.token(lifetime: 240))  // shorter than the 300 s default minimum
        for _ in 0..<10 { _ = try await f.token() }
        #expect(f.fetcher.callCount == 1)
    }

    @Test func configuredDefaultApplies() async throws {
        let f = CacheFixture { $0.defaultMinimumValidity = .seconds(1800) }
        _ = try await f.token()
        f.clock.advance(by: .seconds(1801))
        #expect(f.cache.cachedToken(for: f.key()) == nil)
        #expect(f.cache.cachedToken(for: f.key(), minimumValidity: .seconds(60)) != nil)
    }
}

@Suite struct FailuresAndBackoff {
    @Test func failedRefetchServesTheOldTokenWhileValid() async throws {
        let f = CacheFixture()
        let first = try await f.token()
        f.clock.advance(by: .seconds(3400))
        f.fetcher.answer(.failure(CacheFixture.unavailable))
        #expect(try await f.token() == first)
        #expect(f.fetcher.callCount == 2)
        #expect(f.cache.snapshot(identity: CacheFixture.identity).first?.lastError?.code == .upstreamUnavailable)
        // Within the backoff window the old token is served without calling upstream.
        #expect(try await f.token() == first)
        #expect(f.fetcher.callCount == 2)
    }

    @Test func expiredOldTokenIsNotServed() async throws {
        let f = CacheFixture()
        _ = try await f.token()
        f.clock.advance(by: .seconds(3600))
        f.fetcher.answer(.failure(CacheFixture.unavailable))
        let error = await #expect(throws: TokenExchangeError.self) { try await f.token() }
        #expect(error?.code == .upstreamUnavailable)
    }

    @Test func withinBackoffTheErrorIsReturnedWithoutFetching() async throws {
        let f = CacheFixture()
        f.fetcher.answer(.failure(CacheFixture.unavailable))
        for _ in 0..<3 {
            let error = await #expect(throws: TokenExchangeError.self) { try await f.token() }
            #expect(error?.code == .upstreamUnavailable)
        }
        #expect(f.fetcher.callCount == 1)
        f.clock.advance(by: .seconds(1))  // first backoff is at most 1 s
        await #expect(throws: TokenExchangeError.self) { try await f.token() }
        #expect(f.fetcher.callCount == 2)
        _ = try? await f.token()
        #expect(f.fetcher.callCount == 2)  // second backoff is at least 1 s
        f.clock.advance(by: .seconds(2))
        f.fetcher.answer(.token(lifetime: 3600))
        #expect(try await f.token() == "tok-https://storage.azure.com/.default-3")
        #expect(f.cache.snapshot(identity: CacheFixture.identity).first?.lastError == nil)
    }

    @Test("a new input (a fixed token file) ends the backoff: the next request is tried at once")
    func newInputEndsBackoff() async throws {
        let f = CacheFixture()
        f.fetcher.answer(.failure(CacheFixture.unavailable))
        _ = try? await f.token()
        _ = try? await f.token()
        #expect(f.fetcher.callCount == 1, "within the backoff")
        f.fetcher.changeInput()
        f.fetcher.answer(.token(lifetime: 3600))
        #expect(try await f.token() == "tok-https://storage.azure.com/.default-2")
        // A failure with the new input backs off again, until the input changes once more.
        f.clock.advance(by: .seconds(7200))
        f.fetcher.answer(.failure(CacheFixture.unavailable))
        _ = try? await f.token()
        _ = try? await f.token()
        #expect(f.fetcher.callCount == 3)
    }

    @Test func backoffIsPerScope() async throws {
        let f = CacheFixture()
        f.fetcher.answer(.failure(CacheFixture.unavailable))
        _ = try? await f.token(CacheFixture.storage)
        f.fetcher.answer(.token(lifetime: 3600))
        _ = try await f.token(CacheFixture.vault)
        #expect(f.fetcher.callCount == 2)
    }

    @Test func retryAfterIsRespected() async throws {
        let f = CacheFixture()
        f.fetcher.answer(.failure(CacheFixture.throttled))
        let first = await #expect(throws: TokenExchangeError.self) { try await f.token() }
        #expect(first?.code == .throttled)
        f.clock.advance(by: .seconds(29))
        let second = await #expect(throws: TokenExchangeError.self) { try await f.token() }
        #expect(second?.code == .throttled)
        #expect(second?.retryAfter == .seconds(1))  // what is left of the 30 s, not the 30 s again
        #expect(f.fetcher.callCount == 1)
        f.clock.advance(by: .seconds(1))
        f.fetcher.answer(.token(lifetime: 3600))
        _ = try await f.token()
        #expect(f.fetcher.callCount == 2)
    }
}
