import Foundation
import ManualClock
import Synchronization
import Testing
import TokenCache
import TokenExchange

/// `lookupOrJoin`: one decision under one lock, whether the token is there, is being
/// fetched, or must be.
@Suite struct LookupOrJoin {
    /// What completions delivered, in order.
    final class Delivered: Sendable {
        private let results = Mutex<[Result<CachedToken, TokenExchangeError>]>([])
        private let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
        var all: [Result<CachedToken, TokenExchangeError>] { results.withLock { $0 } }
        var completion: @Sendable (Result<CachedToken, TokenExchangeError>) -> Void {
            { result in
                self.results.withLock { $0.append(result) }
                self.continuation.yield()
            }
        }

        /// Returns once `count` completions have been delivered in all.
        func wait(for count: Int) async {
            var arrivals = stream.makeAsyncIterator()
            var seen = 0
            while seen < count, await arrivals.next() != nil { seen += 1 }
        }
    }

    @Test("a token stored after the caller's own look-up missed is served at once, without a second fetch")
    func aTokenStoredMeanwhileIsServedAtOnce() async throws {
        let f = CacheFixture()
        #expect(f.cache.cachedToken(for: f.key()) == nil, "the caller's look-up misses")
        // Another caller's exchange stores the token before this caller joins.
        let stored = try await f.token()
        let delivered = Delivered()
        f.cache.lookupOrJoin(f.key(), completion: delivered.completion)
        #expect(delivered.all.count == 1, "answered before lookupOrJoin returned")
        #expect(try delivered.all.first?.get().token.value == stored)
        #expect(try delivered.all.first?.get().expiresIn == .seconds(3600))
        #expect(f.fetcher.callCount == 1)
    }

    @Test("callers joining an exchange in flight wait for it and share it; a minimum the token cannot meet starts another")
    func joinersWaitForTheOneExchange() async throws {
        let f = CacheFixture()
        f.fetcher.hold()
        let delivered = Delivered()
        for _ in 0..<3 { f.cache.lookupOrJoin(f.key(), completion: delivered.completion) }
        await f.fetcher.waitForCalls(1)
        #expect(delivered.all.isEmpty, "nothing is answered before the exchange ends")
        f.fetcher.release()
        await delivered.wait(for: 3)
        let values = try delivered.all.map { try $0.get().token.value }
        #expect(Set(values) == ["tok-https://storage.azure.com/.default-1"] && f.fetcher.callCount == 1)

        // The cached token has an hour left: asking for more than that is a miss, decided
        // in the same call, and (past the minimum refresh interval) fetched again.
        f.clock.advance(by: .seconds(120))
        let longer = Delivered()
        f.cache.lookupOrJoin(f.key(), minimumValidity: .seconds(3590), completion: longer.completion)
        await longer.wait(for: 1)
        #expect(f.fetcher.callCount == 2)
    }

    @Test("an identity the cache does not know is an internal error, answered at once")
    func unknownIdentity() {
        let f = CacheFixture()
        let delivered = Delivered()
        f.cache.lookupOrJoin(f.key(identity: "nobody"), completion: delivered.completion)
        guard case .failure(let error)? = delivered.all.first else {
            Issue.record("answered \(delivered.all)")
            return
        }
        #expect(error.code == .internal && f.fetcher.callCount == 0)
    }
}
