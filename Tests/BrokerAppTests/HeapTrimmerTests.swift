import Foundation
import Logging
import Synchronization
import Testing
import TokenCache
import TokenExchange

@testable import BrokerApp

@Suite struct HeapTrimmerTests {
    struct OneTokenFetcher: TokenFetching {
        func fetchToken(for scope: Scope) async throws(TokenExchangeError) -> AccessToken {
            AccessToken(value: "t-\(scope.value)", issuedAt: Date(), expiresAt: Date().addingTimeInterval(3600))
        }
    }

    /// After exchanges, once; while nothing is exchanged, never.
    @Test func trimsOnceAfterExchangesAndNotWhileIdle() async throws {
        let cache = TokenCache(clock: ContinuousClock(), now: { Date() }, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        cache.register(identity: "a", fetcher: OneTokenFetcher())
        let trims = Atomic<Int>(0)
        let trimmer = HeapTrimmer(cache: cache, interval: .milliseconds(20), trim: { trims.add(1, ordering: .relaxed) })
        let running = Task { try await trimmer.run() }
        defer { running.cancel() }

        try await Task.sleep(for: .milliseconds(200))
        #expect(trims.load(ordering: .relaxed) == 0, "nothing was exchanged")
        for n in 0..<3 { _ = try await cache.token(for: TokenKey(identity: "a", scope: Scope("https://app-\(n).example/.default"))) }
        let deadline = ContinuousClock.now + .seconds(30)
        while trims.load(ordering: .relaxed) == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(200))
        #expect(trims.load(ordering: .relaxed) == 1, "one trim for the burst, none while idle after it")
    }
}
