public import FoundationEssentials
import Glibc
public import Logging
import Synchronization
public import TokenExchange

/// An assertion fetched on demand — from a plugin, a CI system's token service or a
/// cloud metadata server — and reused until shortly before it expires.
///
/// Concurrent callers share one fetch. A failed fetch is not cached: the next caller
/// tries again (the token cache above already backs off per scope).
public final class FetchedAssertionSource: ManagedAssertionSource, Sendable {
    /// Produces a fresh assertion, and when to stop reusing it if earlier than its `exp`
    /// (a plugin's `expiresAt`).
    public typealias Fetch = @Sendable () async throws(TokenExchangeError) -> (assertion: Assertion, expiresAt: Date?)

    /// Where assertions come from, for messages and status (`exec:NAME`, a URL).
    public let origin: String
    private let fetch: Fetch
    private let now: @Sendable () -> Date
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
        var assertion: Assertion?
        var expiresAt: Date?
        var lastError: TokenExchangeError?
        var checkedAt: Date?
        var inFlight: Task<Assertion, any Error>?
    }

    /// Creates a source; nothing is fetched until the first `currentAssertion()`.
    public init(origin: String, now: @escaping @Sendable () -> Date, logger: Logger, fetch: @escaping Fetch) {
        self.origin = origin
        self.fetch = fetch
        self.now = now
        var logger = logger
        logger[metadataKey: "assertion.origin"] = .string(origin)
        self.logger = logger
    }

    public func currentAssertion() async throws(TokenExchangeError) -> Assertion {
        let task = state.withLock { state -> Task<Assertion, any Error>? in
            if let cached = state.assertion, Self.isFresh(cached, expiresAt: state.expiresAt, at: now()) { return nil }
            if let running = state.inFlight { return running }
            let task = Task { [self] () async throws -> Assertion in try await fetchOnce() }
            state.inFlight = task
            return task
        }
        guard let task else {
            // Fresh cached assertion (checked under the lock above).
            return state.withLock { $0.assertion! }
        }
        do {
            return try await task.value
        } catch let error as TokenExchangeError {
            throw error
        } catch {
            throw .assertionUnavailable(origin: origin, reason: "\(error)")
        }
    }

    private func fetchOnce() async throws(TokenExchangeError) -> Assertion {
        let result: Result<(assertion: Assertion, expiresAt: Date?), TokenExchangeError>
        do {
            let fetched = try await fetch()
            try fetched.assertion.checkValidity(at: now())
            result = .success(fetched)
        } catch {
            result = .failure(error)
        }
        state.withLock { state in
            state.inFlight = nil
            state.checkedAt = now()
            switch result {
            case .success(let fetched):
                state.assertion = fetched.assertion
                state.expiresAt = fetched.expiresAt
                state.lastError = nil
            case .failure(let error):
                state.assertion = nil
                state.lastError = error
            }
        }
        switch result {
        case .success(let (assertion, _)):
            logger.info(
                "assertion fetched",
                metadata: [
                    "assertion.subject": "\(JWTClaims.shown(assertion.claims.subject ?? "-"))",
                    "assertion.expires_at": "\(assertion.claims.expiresAt.map { Int($0.timeIntervalSince1970) } ?? 0)",
                ])
            return assertion
        case .failure(let error):
            logger.warning("assertion fetch failed", metadata: ["error.code": "\(error.code.rawValue)", "error.message": "\(error.message)"])
            throw error
        }
    }

    /// Reused until a tenth of its lifetime (at least a minute) is left; one without
    /// `exp` is fetched for every exchange.
    static func isFresh(_ assertion: Assertion, expiresAt declared: Date?, at now: Date) -> Bool {
        guard let claimed = assertion.claims.expiresAt else { return false }
        let expiresAt = min(claimed, declared ?? claimed)
        let lifetime = expiresAt.timeIntervalSince(assertion.claims.issuedAt ?? assertion.loadedAt)
        return expiresAt.timeIntervalSince(now) > max(60, lifetime / 10)
    }

    /// Nothing to watch: assertions are fetched when needed.
    public func run() async throws {}

    public func snapshot() -> AssertionSnapshot {
        state.withLock { state in
            var snapshot = AssertionSnapshot(origin: origin, checkedAt: state.checkedAt)
            if let assertion = state.assertion {
                snapshot.claims = assertion.claims
                snapshot.loadedAt = assertion.loadedAt
            } else if let error = state.lastError {
                snapshot.errorMessage = error.message
                snapshot.errorCode = error.code.rawValue
            }
            return snapshot
        }
    }
}
