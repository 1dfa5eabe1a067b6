import CoreMetrics
import DetachedThread
import FoundationEssentials
import Glibc
import Logging
import Synchronization
import TokenCache
import TokenExchange

/// Keeps one sink's file holding a valid token. It asks the cache — the same entry, the same
/// single exchange as socket callers — for a token valid at least `refreshBeforeExpirySeconds`,
/// writes it when it differs from the one in the file, runs `onRotate` once per new token,
/// then waits until that validity runs out or the cache stores a new token for its key
/// (`wake()`), whichever is first. A token that cannot be replaced before it expires is
/// removed: a missing file says "no token" more plainly than an expired one.
final class SinkWriter: Sendable {
    let settings: SinkSettings
    let key: TokenKey
    private let cache: TokenCache<ContinuousClock>
    private let minimumValidity: Duration
    /// `cache.minValiditySeconds` when the writer was made: the refresh margin unless the sink sets one.
    let defaultRefreshSeconds: Int
    private let logger: Logger
    private let doorbell = Doorbell()
    let state = Mutex(SinkState())

    /// What the writer last did, for status and metrics.
    struct SinkState: Sendable {
        var written: SinkFile.Written?
        /// The token (`AccessToken.value`) now in the file.
        var value: String?
        var expiresAt: Date?
        var lastWrite: Date?
        var lastError: SinkError?
    }

    init(settings: SinkSettings, defaultRefreshSeconds: Int, cache: TokenCache<ContinuousClock>, logger: Logger) {
        self.settings = settings
        self.key = TokenKey(identity: settings.identity, scope: settings.scope)
        self.cache = cache
        self.minimumValidity = .seconds(settings.refreshBeforeExpirySeconds ?? defaultRefreshSeconds)
        self.defaultRefreshSeconds = defaultRefreshSeconds
        self.logger = logger.with("sink.path", settings.path)
    }

    /// The cache stored a new token for `key`.
    func wake() { doorbell.ring() }

    /// Writes and refreshes until cancelled.
    func run() async {
        var failures = 0
        while !Task.isCancelled {
            let wait = await step(failures: &failures)
            await doorbell.wait(for: wait)
        }
    }

    /// One round: get the token, write it if new, say how long to wait.
    private func step(failures: inout Int) async -> Duration {
        let cached: CachedToken
        do throws(TokenExchangeError) {
            cached = try await cache.token(for: key, minimumValidity: minimumValidity)
        } catch {
            failures += 1
            fail(SinkError(.tokenUnavailable, "no token for identity '\(key.identity)' scope \(key.scope): \(error.code.rawValue): \(error.message)"))
            // Retry on the backoff, and wake at the file's expiry to remove it if still no token.
            let backoff = Self.backoff(failures)
            return removeIfExpired().map { min($0, backoff) } ?? backoff
        }
        guard !Task.isCancelled else { return .zero }
        do throws(SinkError) {
            if try await writeIfNew(cached), let action = settings.onRotate {
                if let error = await SinkRotation(action: action, path: settings.path, logger: logger).run() {
                    Self.count("tokenbroker_sink_rotations_total", path: settings.path, outcome: error.code.rawValue)
                    logger.warning("sink onRotate failed", metadata: ["error.code": "\(error.code.rawValue)", "error.message": "\(error.message)"])
                    state.withLock { $0.lastError = error }
                } else {
                    Self.count("tokenbroker_sink_rotations_total", path: settings.path, outcome: "ok")
                }
            }
            failures = 0
        } catch {
            failures += 1
            fail(error)
            return min(Self.backoff(failures), removeIfExpired() ?? .seconds(3600))
        }
        let margin = cached.expiresIn - minimumValidity
        // Wake at least every 15 min: asking marks the scope as in use, so the cache keeps
        // refreshing it ahead of expiry on its own policy (half the lifetime, Entra's refresh_in).
        if margin > .zero { return min(margin, .seconds(900)) }
        // Less validity than wanted: the cache refreshes a scope at most every
        // cache.minRefreshIntervalSeconds, or its last exchange failed. Ask again soon.
        return max(.seconds(1), min(cached.expiresIn, .seconds(5)))
    }

    /// Writes `cached` unless the file already holds it. True when a new token was written
    /// (not the same one again, as after the file was deleted): time for `onRotate`.
    private func writeIfNew(_ cached: CachedToken) async throws(SinkError) -> Bool {
        let current = state.withLock { $0 }
        let value = cached.token.value  // made on each read (`AccessToken.value`)
        if current.value == value, let written = current.written, SinkFile.isUnchanged(settings.path, written) { return false }
        let bytes = try settings.format.render(cached)
        let owner: (uid: uid_t, gid: gid_t)
        switch SinkOwner.resolve(settings.owner) {
        case .success(let ids): owner = ids
        case .failure(let error): throw error
        }
        // A restarted daemon, or a reload that changed the sink, finds its file already right.
        if current.value == nil, let found = SinkFile.holds(bytes, at: settings.path, mode: settings.mode, uid: owner.uid, gid: owner.gid) {
            state.withLock {
                $0 = SinkState(
                    written: found.written, value: value, expiresAt: cached.token.expiresAt, lastWrite: found.modified, lastError: nil)
            }
            return false
        }
        let (path, mode) = (settings.path, settings.mode)
        let written = try await Self.offPool { () throws(SinkError) in try SinkFile.write(bytes, to: path, mode: mode, uid: owner.uid, gid: owner.gid)
        }
        state.withLock {
            $0 = SinkState(written: written, value: value, expiresAt: cached.token.expiresAt, lastWrite: Date(), lastError: nil)
        }
        Self.count("tokenbroker_sink_writes_total", path: settings.path, outcome: "ok")
        let isNew = current.value != value
        logger.info(
            "sink written",
            metadata: [
                "token.identity": "\(key.identity)", "token.scope": "\(key.scope)",
                "token.expires_at": "\(Int(cached.token.expiresAt.timeIntervalSince1970))",
                "sink.new_token": "\(isNew)",
            ])
        return isNew
    }

    /// Records a failure (status, metrics, one warning).
    private func fail(_ error: SinkError) {
        state.withLock { $0.lastError = error }
        Self.count("tokenbroker_sink_writes_total", path: settings.path, outcome: error.code.rawValue)
        logger.warning("sink not written", metadata: ["error.code": "\(error.code.rawValue)", "error.message": "\(error.message)"])
    }

    /// Removes the file once the token in it has expired; otherwise the time left on it
    /// (nil when there is no token in the file).
    private func removeIfExpired() -> Duration? {
        let now = Date()
        let expired = state.withLock { state -> SinkFile.Written?? in
            guard let expiresAt = state.expiresAt else { return .none }
            guard expiresAt <= now else { return .some(nil) }
            defer {
                state = SinkState(
                    lastWrite: state.lastWrite,
                    lastError: SinkError(.tokenExpired, "the token expired before a new one could be obtained; the file was removed"))
            }
            return .some(state.written)
        }
        switch expired {
        case .none:
            return nil
        case .some(nil):
            let left = state.withLock { $0.expiresAt }.map { $0.timeIntervalSince(now) } ?? 0
            return .seconds(max(0, left))
        case .some(let written?):
            SinkFile.remove(settings.path, ifStill: written)
            Self.count("tokenbroker_sink_writes_total", path: settings.path, outcome: SinkError.Code.tokenExpired.rawValue)
            logger.warning("sink token expired; file removed", metadata: ["token.identity": "\(key.identity)", "token.scope": "\(key.scope)"])
            return nil
        }
    }

    /// Removes the file if it is still the one this writer wrote (the sink was removed).
    func removeFile() {
        guard let written = state.withLock({ $0.written }) else { return }
        SinkFile.remove(settings.path, ifStill: written)
    }

    /// Runs `body` on a thread of its own: `fsync` may block for as long as the disk takes,
    /// and the cooperative pool (two threads on two cores) also runs the cache's exchanges.
    private static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws(SinkError) -> T) async throws(SinkError) -> T {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, SinkError>, Never>) in
            let failure = DetachedThread.tryStart {
                do throws(SinkError) { continuation.resume(returning: .success(try body())) } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            if let failure {
                continuation.resume(
                    returning: .failure(SinkError(.writeFailed, "cannot start a thread to write: \(String(cString: strerror(failure)))")))
            }
        }
        return try result.get()
    }

    /// 1 s, doubling, at most 60 s.
    private static func backoff(_ failures: Int) -> Duration {
        .seconds(min(60, 1 << min(max(failures - 1, 0), 6)))
    }

    private static func count(_ label: String, path: String, outcome: String) {
        CoreMetrics.Counter(label: label, dimensions: [("path", path), ("outcome", outcome)]).increment()
    }
}
