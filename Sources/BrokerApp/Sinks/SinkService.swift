import FoundationEssentials
import Glibc
import Logging
import ServiceLifecycle
import Synchronization
import TokenBrokerProtocol
import TokenCache
import TokenExchange

/// The running sinks, one `SinkWriter` task each, keyed by path. `apply` starts, replaces and
/// stops them (at start and on SIGHUP); the cache's stored-token notices wake the writers of
/// that key. At shutdown the writers stop and their files stay: the tokens in them are still
/// valid, and a restarted broker takes them over.
final class SinkService: Service, Sendable {
    private let cache: TokenCache<ContinuousClock>
    private let logger: Logger
    private let running = Mutex<[String: Running]>([:])

    private struct Running: Sendable {
        var writer: SinkWriter
        var task: Task<Void, Never>
    }

    init(cache: TokenCache<ContinuousClock>, logger: Logger) {
        self.cache = cache
        self.logger = logger
        cache.observeStoredTokens { [weak self] key in self?.wake(key) }
    }

    private func wake(_ key: TokenKey) {
        let writers = running.withLock { $0.values.filter { $0.writer.key == key }.map(\.writer) }
        for writer in writers { writer.wake() }
    }

    /// Makes `sinks` the running set. An unchanged sink keeps running; a changed one is
    /// restarted (it keeps its file if that already holds the right bytes); a removed one stops
    /// and its file is deleted if it is still the one it wrote — nothing would keep it fresh.
    /// Returns the paths added and removed.
    @discardableResult
    func apply(_ sinks: [SinkSettings], defaultRefreshSeconds: Int) -> (added: [String], removed: [String]) {
        var started: [SinkWriter] = []
        let (stopped, replaced) = running.withLock { running -> ([Running], [Running]) in
            var stopped: [Running] = [], replaced: [Running] = []
            let wanted = Set(sinks.map(\.path))
            for (path, entry) in running where !wanted.contains(path) {
                stopped.append(entry)
                running.removeValue(forKey: path)
            }
            for settings in sinks {
                let previous = running[settings.path]
                if let previous {
                    if previous.writer.settings == settings, previous.writer.defaultRefreshSeconds == defaultRefreshSeconds { continue }
                    replaced.append(previous)
                }
                let writer = SinkWriter(settings: settings, defaultRefreshSeconds: defaultRefreshSeconds, cache: cache, logger: logger)
                // A replaced writer finishes first: one writer per path at a time.
                running[settings.path] = Running(
                    writer: writer,
                    task: Task {
                        await previous?.task.value
                        await writer.run()
                    })
                started.append(writer)
            }
            return (stopped, replaced)
        }
        for entry in replaced { entry.task.cancel() }
        for entry in stopped {
            entry.task.cancel()
            // After the writer has stopped, so that no write of its can follow the removal.
            Task {
                await entry.task.value
                entry.writer.removeFile()
            }
        }
        // Kept writers look again: an identity whose source or exchange changed has new tokens.
        for writer in running.withLock({ $0.values.map(\.writer) }) { writer.wake() }
        return (started.map(\.settings.path), stopped.map(\.writer.settings.path))
    }

    /// Waits for shutdown, then stops every writer (their files stay).
    func run() async throws {
        try? await gracefulShutdown()
        let all = running.withLock { running in
            defer { running.removeAll() }
            return Array(running.values)
        }
        for entry in all { entry.task.cancel() }
        for entry in all { await entry.task.value }
    }

    /// The sinks of the identities in `visible`, by path.
    func status(visible: Set<String>) -> [SinkStatus] {
        let writers = running.withLock { $0.values.map(\.writer) }
        return writers.filter { visible.contains($0.settings.identity) }.sorted { $0.settings.path < $1.settings.path }.map { writer in
            let state = writer.state.withLock { $0 }
            return SinkStatus(
                path: writer.settings.path, identity: writer.settings.identity, scope: writer.settings.scope.value,
                format: writer.settings.format.rawValue,
                lastWrite: state.lastWrite.map { Int64($0.timeIntervalSince1970) },
                expiresOn: state.expiresAt.map { Int64($0.timeIntervalSince1970) },
                lastError: state.lastError.map { WireError(code: $0.code.rawValue, message: $0.message, retryable: true) })
        }
    }

    /// For the state gauges: each sink's path, the time left on its file's token (nil: no
    /// file), and whether its last attempt failed.
    func gaugeValues() -> [(path: String, expiresIn: Double?, failing: Bool)] {
        let now = Date()
        return running.withLock { $0.values.map(\.writer) }.map { writer in
            let state = writer.state.withLock { $0 }
            return (writer.settings.path, state.expiresAt.map { $0.timeIntervalSince(now).rounded() }, state.lastError != nil)
        }
    }
}
