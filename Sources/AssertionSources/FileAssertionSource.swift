import DetachedThread
public import FoundationEssentials
import Glibc
public import Logging
public import ServiceLifecycle
import Synchronization
public import TokenExchange

/// An `AssertionSource` backed by a token file that something else keeps fresh: a
/// Kubernetes projected service-account token (kubelet's AtomicWriter layout), or any
/// file rewritten in place.
///
/// As a `Service`, `run()` watches the file's directory with inotify and re-reads the
/// file on every relevant event, with a slow poll as a fallback; `currentAssertion()`
/// then answers from memory. Without `run()` it still works: a call whose cached state
/// is missing, failed, expired or older than `pollInterval` re-reads the file first.
public final class FileAssertionSource: AssertionSource, Service, Sendable {
    /// The token file, as configured (used as the origin in every message).
    public let path: String
    /// How often the file is re-read without an event, and how soon a missing directory is noticed.
    public let pollInterval: Duration

    private let reader: TokenFileReader
    private let now: @Sendable () -> Date
    private let logger: Logger
    private let state = Mutex(State())
    private let version = Atomic<UInt64>(0)

    /// Counts the new assertions read (another token, or one after a failed read): the
    /// cache retries a failed exchange at once when it changes.
    public var assertionVersion: UInt64 { version.load(ordering: .relaxed) }

    /// The last read and what has been logged about it.
    private struct State {
        /// The last read's result; nil before the first read.
        var result: Result<Assertion, TokenExchangeError>?
        /// When the file was last read.
        var checkedAt: Date?
        /// Orders concurrent reads (the watcher thread and callers): an older read never
        /// overwrites a newer one.
        var nextReadNumber = 0
        var appliedReadNumber = -1
        /// The token whose expiry has been logged, so it is logged once.
        var expiryLoggedFor: String?
    }

    /// Creates a source for `path`. Nothing is read until the first `currentAssertion()` or `run()`.
    ///
    /// - Parameters:
    ///   - path: The token file; for kubelet volumes the `name` symlink, not `..data/name`.
    ///   - pollInterval: Fallback re-read period when no event arrives (default 60 s).
    ///   - now: The wall clock used for validity checks and `loadedAt`.
    ///   - logger: Receives one info line per new assertion and one warning per failure state.
    public init(path: String, pollInterval: Duration = .seconds(60), now: @escaping @Sendable () -> Date, logger: Logger) {
        self.path = path
        self.pollInterval = pollInterval
        self.reader = TokenFileReader(path: path)
        self.now = now
        var logger = logger
        logger[metadataKey: "assertion.origin"] = .string(path)
        self.logger = logger
    }

    /// The cached assertion when still valid; otherwise the file is re-read once before failing.
    ///
    /// Throws `assertion_unavailable` naming the file and the reason, or `assertion_expired`
    /// naming the file and its `exp`/`nbf`.
    public func currentAssertion() async throws(TokenExchangeError) -> Assertion {
        let instant = now()
        let (cached, checkedAt) = state.withLock { ($0.result, $0.checkedAt) }
        // A read older than the poll interval means no watcher is refreshing it (run() not
        // started): re-read so the poll fallback holds even then.
        let fresh = checkedAt.map { instant.timeIntervalSince($0) < Self.seconds(pollInterval) } ?? false
        if fresh, case .success(let assertion)? = cached, (try? assertion.checkValidity(at: instant)) != nil {
            return assertion
        }
        // Missing, failed, expired or stale: the file may have changed since the last event.
        // Reading a file this small takes microseconds, so do it inline.
        let assertion = try reload().get()
        do {
            try assertion.checkValidity(at: now())
        } catch {
            logExpiryOnce(of: assertion, error)
            throw error
        }
        return assertion
    }

    /// What is held right now, without touching the file.
    public func snapshot() -> AssertionSnapshot {
        state.withLock { state in
            var snapshot = AssertionSnapshot(origin: path, checkedAt: state.checkedAt)
            switch state.result {
            case .success(let assertion)?:
                snapshot.claims = assertion.claims
                snapshot.loadedAt = assertion.loadedAt
            case .failure(let error)?:
                snapshot.errorMessage = error.message
                snapshot.errorCode = error.code.rawValue
            case nil:
                break
            }
            return snapshot
        }
    }

    /// Watches the file until the task is cancelled or a graceful shutdown begins.
    public func run() async throws {
        guard let stop = StopSignal() else {
            throw TokenExchangeError(code: .internal, message: "cannot watch \(path): out of file descriptors", isRetryable: true)
        }
        let directory = PathText.directory(path)
        let fileName = PathText.lastComponent(path)
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
                    DetachedThread.start { [self] in
                        watch(DirectoryWatcher(directory: directory.isEmpty ? "." : directory, fileName: fileName, stop: stop))
                        finished.resume()
                    }
                }
            } onGracefulShutdown: {
                stop.fire()
            }
        } onCancel: {
            // A stop fired before the thread starts stays in the pipe, so this cannot be lost.
            stop.fire()
        }
    }

    /// The watcher thread's loop: wait for an event or the poll deadline, re-read, repeat.
    private func watch(_ watcher: DirectoryWatcher) {
        let clock = ContinuousClock()
        _ = watcher.ensureWatch()
        reload()
        var nextPoll = clock.now + pollInterval
        logger.debug("watching token file", metadata: ["assertion.watch": "\(watcher.isWatching ? "inotify" : "poll")"])
        if !watcher.isWatching, access(watcher.directory, F_OK) == 0, let failure = watcher.watchFailure {
            // A missing directory is the "token file unusable" warning's business; this is not.
            logger.warning(
                "cannot watch the token file's directory; re-reading it every \(pollInterval) instead, so a rotated token is noticed that late (raise fs.inotify.max_user_instances?)",
                metadata: ["assertion.watch": "poll", "error.message": "\(failure)"])
        }
        while true {
            let remaining = max(Duration.zero, nextPoll - clock.now)
            switch watcher.wait(timeoutMilliseconds: Self.milliseconds(remaining)) {
            case .stopped:
                return
            case .unrelated:
                continue
            case .changed:
                reload()
            case .timedOut:
                // The directory may have appeared since; a fresh watch means events may have
                // been missed, so the re-read below covers both.
                _ = watcher.ensureWatch()
                reload()
                nextPoll = clock.now + pollInterval
            }
            if !watcher.isWatching, watcher.ensureWatch() { reload() }
        }
    }

    /// Reads the file, stores the result unless a newer read already landed, and logs state changes.
    @discardableResult
    private func reload() -> Result<Assertion, TokenExchangeError> {
        let number = state.withLock { state in
            defer { state.nextReadNumber += 1 }
            return state.nextReadNumber
        }
        let readAt = now()
        let result = reader.read(loadedAt: readAt)
        let (applied, previous) = state.withLock { state -> (Bool, Result<Assertion, TokenExchangeError>?) in
            guard number > state.appliedReadNumber else { return (false, nil) }
            defer {
                state.result = result
                state.checkedAt = readAt
                state.appliedReadNumber = number
            }
            return (true, state.result)
        }
        if applied {
            if case .success(let new) = result, (try? previous?.get())?.jwt != new.jwt { version.add(1, ordering: .relaxed) }
            logTransition(from: previous, to: result)
        }
        return result
    }

    private func logTransition(from previous: Result<Assertion, TokenExchangeError>?, to current: Result<Assertion, TokenExchangeError>) {
        switch (previous, current) {
        case (.success(let old)?, .success(let new)) where old.jwt == new.jwt:
            return
        case (_, .success(let new)):
            logger.info("picked up assertion", metadata: Self.metadata(new.claims))
        case (.failure(let old)?, .failure(let new)) where old.message == new.message:
            return
        case (_, .failure(let error)):
            logger.warning("token file unusable", metadata: ["error.code": "\(error.code.rawValue)", "error.message": "\(error.message)"])
        }
    }

    private func logExpiryOnce(of assertion: Assertion, _ error: TokenExchangeError) {
        let first = state.withLock { state in
            defer { state.expiryLoggedFor = assertion.jwt }
            return state.expiryLoggedFor != assertion.jwt
        }
        if first {
            logger.warning("assertion not usable", metadata: ["error.code": "\(error.code.rawValue)", "error.message": "\(error.message)"])
        }
    }

    private static func metadata(_ claims: JWTClaims) -> Logger.Metadata {
        var metadata: Logger.Metadata = [:]
        // The file's writer chose these: shown on one line, cut (JWTClaims.shown).
        if let sub = claims.subject { metadata["assertion.sub"] = "\(JWTClaims.shown(sub))" }
        if let iss = claims.issuer { metadata["assertion.iss"] = "\(JWTClaims.shown(iss))" }
        if let exp = claims.expiresAt { metadata["assertion.exp"] = "\(Int(exp.timeIntervalSince1970))" }
        if !claims.audiences.isEmpty { metadata["assertion.aud"] = "\(JWTClaims.shown(claims.audiences.joined(separator: ",")))" }
        return metadata
    }

    private static func seconds(_ duration: Duration) -> TimeInterval {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    private static func milliseconds(_ duration: Duration) -> Int32 {
        let (seconds, attoseconds) = duration.components
        let total = seconds * 1000 + attoseconds / 1_000_000_000_000_000 + (attoseconds % 1_000_000_000_000_000 > 0 ? 1 : 0)
        return Int32(clamping: total)
    }
}
