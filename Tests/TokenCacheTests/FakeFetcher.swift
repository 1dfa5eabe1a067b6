import Foundation
import Logging
import ManualClock
import Synchronization
import TokenCache
import TokenExchange

/// A `TokenFetching` that counts calls, answers as scripted, and can hold fetches
/// in flight until the test releases them.
final class FakeFetcher: TokenFetching {
    enum Outcome: Sendable {
        /// A token valid for `lifetime` from the clock's wall time, optionally with Entra's `refresh_in`.
        case token(lifetime: TimeInterval, refreshIn: TimeInterval? = nil)
        case failure(TokenExchangeError)
    }

    private struct State {
        var calls: [Scope] = []
        var outcome: Outcome = .token(lifetime: 3600)
        var holding = false
        var held: [CheckedContinuation<Void, Never>] = []
        var callWaiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []
        var inFlight = 0
        var mostInFlight = 0
    }

    private let state = Mutex(State())
    private let clock: ManualClock
    let name: String

    init(clock: ManualClock, name: String = "tok") {
        self.clock = clock
        self.name = name
    }

    /// What the next fetches produce.
    func answer(_ outcome: Outcome) { state.withLock { $0.outcome = outcome } }

    private let version = Atomic<UInt64>(0)
    var inputVersion: UInt64 { version.load(ordering: .relaxed) }
    /// A new assertion, say: what the next fetch sends changes.
    func changeInput() { version.add(1, ordering: .relaxed) }

    /// From now on, fetches wait in flight until `release()`.
    func hold() { state.withLock { $0.holding = true } }

    /// Lets every held fetch (and later ones) complete.
    func release() {
        let held = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.holding = false
            defer { state.held = [] }
            return state.held
        }
        for continuation in held { continuation.resume() }
    }

    var callCount: Int { state.withLock { $0.calls.count } }
    /// The most fetches that were running at the same time.
    var mostInFlight: Int { state.withLock { $0.mostInFlight } }
    var calls: [Scope] { state.withLock { $0.calls } }

    /// Returns once at least `count` fetches have started.
    func waitForCalls(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.calls.count >= count { return true }
                state.callWaiters.append((count, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    func fetchToken(for scope: Scope) async throws(TokenExchangeError) -> AccessToken {
        let (number, outcome, woken) = state.withLock { state in
            state.calls.append(scope)
            state.inFlight += 1
            state.mostInFlight = max(state.mostInFlight, state.inFlight)
            let n = state.calls.count
            let woken = state.callWaiters.filter { $0.count <= n }.map(\.continuation)
            state.callWaiters.removeAll { $0.count <= n }
            return (n, state.outcome, woken)
        }
        for continuation in woken { continuation.resume() }
        defer { state.withLock { $0.inFlight -= 1 } }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let proceed = state.withLock { state -> Bool in
                guard state.holding else { return true }
                state.held.append(continuation)
                return false
            }
            if proceed { continuation.resume() }
        }
        switch outcome {
        case .token(let lifetime, let refreshIn):
            let issued = clock.date
            return AccessToken(
                value: "\(name)-\(scope.value)-\(number)", issuedAt: issued, expiresAt: issued.addingTimeInterval(lifetime),
                refreshAt: refreshIn.map { issued.addingTimeInterval($0) })
        case .failure(let error):
            throw error
        }
    }
}

/// A cache on a manual clock with one identity, as most tests want it.
struct CacheFixture: Sendable {
    let clock = ManualClock()
    let fetcher: FakeFetcher
    let cache: TokenCache<ManualClock>

    static let identity = "storage-writer"
    static let storage = Scope("https://storage.azure.com/.default")
    static let vault = Scope("https://vault.azure.net/.default")

    init(
        logger: Logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
        _ configure: (inout TokenCacheConfiguration) -> Void = { _ in }
    ) {
        var configuration = TokenCacheConfiguration()
        configure(&configuration)
        fetcher = FakeFetcher(clock: clock)
        let clock = self.clock
        cache = TokenCache(configuration: configuration, clock: clock, now: { clock.date }, logger: logger)
        cache.register(identity: Self.identity, fetcher: fetcher)
    }

    func key(_ scope: Scope = Self.storage, identity: String = Self.identity) -> TokenKey {
        TokenKey(identity: identity, scope: scope)
    }

    func token(_ scope: Scope = Self.storage, minimumValidity: Duration? = nil) async throws(TokenExchangeError) -> String {
        try await cache.token(for: key(scope), minimumValidity: minimumValidity).token.value
    }

    static let throttled = TokenExchangeError(code: .throttled, message: "slow down", isRetryable: true, retryAfter: .seconds(30))
    static let unavailable = TokenExchangeError(code: .upstreamUnavailable, message: "HTTP 503", isRetryable: true)
}
