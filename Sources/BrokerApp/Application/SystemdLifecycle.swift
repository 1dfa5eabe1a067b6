import BrokerServer
import FoundationEssentials
import Glibc
import Logging
import NIOCore
import ServiceLifecycle
import SystemdSupport
import TokenCache
import TokenExchange
import UnixSignals

/// Tells systemd the truth about our state: `READY=1` (after the first tokens when
/// `readiness: token`), a current `STATUS=` line, `WATCHDOG=1` only while every loop
/// that serves callers and the cache's lock answer, `RELOADING=1`/`READY=1` around a SIGHUP reload, and
/// `STOPPING=1` when shutdown begins. Without systemd the notifications are no-ops
/// and SIGHUP reload still works.
struct SystemdLifecycle: Service {
    let runtime: BrokerRuntime
    let server: any BrokerServer
    /// The threads that serve callers, asked afresh each round (listeners bind late).
    let servingLoops: @Sendable () -> LoopProbe
    let readiness: BrokerConfiguration.ReadinessSettings
    let prefetch: [TokenKey]
    let reload: (@Sendable () throws -> BrokerConfiguration)?
    let logger: Logger
    /// Awaited once the socket listens, before READY (the compatibility listeners).
    let beforeReady: @Sendable () async throws -> Void
    let onReady: @Sendable () -> Void
    private let notifier = SystemdNotifier()

    init(
        runtime: BrokerRuntime, server: any BrokerServer, servingLoops: @escaping @Sendable () -> LoopProbe,
        readiness: BrokerConfiguration.ReadinessSettings, prefetch: [TokenKey],
        reload: (@Sendable () throws -> BrokerConfiguration)?, logger: Logger, beforeReady: @escaping @Sendable () async throws -> Void = {},
        onReady: @escaping @Sendable () -> Void
    ) {
        self.beforeReady = beforeReady
        self.runtime = runtime
        self.server = server
        self.servingLoops = servingLoops
        self.readiness = readiness
        self.prefetch = prefetch
        self.reload = reload
        self.logger = logger
        self.onReady = onReady
    }

    func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    await announceReady()
                    await keepStatusCurrent()
                }
                if let interval = SystemdNotifier.watchdogInterval() {
                    group.addTask { await watchdog(every: interval / 2) }
                }
                group.addTask { await reloadOnHangup() }
                // Everything runs until shutdown; then the tasks are cancelled.
                try? await gracefulShutdown()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            notifier.stopping()
            // Exchanges in flight get a moment (a restart must not lose requests), then
            // their callers are answered shutting_down: a hung token service does not
            // hold the stop.
            runtime.cache.beginShutdown()
            logger.info("stopping: draining connections; exchanges still in flight after 1.5 s are abandoned")
        }
    }

    // MARK: Readiness

    private func announceReady() async {
        do {
            try await server.waitUntilListening()
            try await beforeReady()
        } catch {
            return  // the server's run() reports the failure and stops the group
        }
        if readiness.mode == .token, !prefetch.isEmpty {
            let deadline = ContinuousClock.now + .seconds(readiness.timeoutSeconds)
            while case let missing = missingTokens().count, missing > 0, ContinuousClock.now < deadline, !Task.isCancelled {
                notifier.status("waiting for first tokens: \(missing) of \(prefetch.count) prefetch scopes missing")
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        let missing = readiness.mode == .token ? missingTokens() : []
        let line =
            missing.isEmpty
            ? statusLine()
            : "ready after \(readiness.timeoutSeconds) s without tokens for \(missing.map(\.description).joined(separator: "; ")); \(statusLine())"
        notifier.ready(status: line)
        logger.info("ready", metadata: ["broker.status": "\(line)"])
        onReady()
    }

    private func keepStatusCurrent() async {
        var last = ""
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(5))
            let now = statusLine()
            if now != last {
                notifier.status(now)
                last = now
            }
        }
    }

    private func missingTokens() -> [TokenKey] {
        prefetch.filter { !runtime.cache.holdsToken(for: $0) }
    }

    /// One line: identities, cached tokens, connections, last upstream error.
    func statusLine() -> String {
        let identities = runtime.broker.currentIdentities
        let lastError = identities.lazy.compactMap { identity in
            runtime.cache.snapshot(identity: identity.configuration.name).compactMap(\.lastError).first.map {
                "\(identity.configuration.name): \($0.code.rawValue)"
            }
        }.first
        return
            "serving \(identities.count) identit\(identities.count == 1 ? "y" : "ies"), \(runtime.cache.count) cached token\(runtime.cache.count == 1 ? "" : "s"), "
            + "\(server.openConnections) connection\(server.openConnections == 1 ? "" : "s")"
            + (lastError.map { "; last error \($0)" } ?? "")
    }

    // MARK: Watchdog

    /// Pings only after every loop that serves callers ran a task within the interval
    /// (each epoll loop of the socket, each compatibility listener's, NIO's loop, which
    /// also takes the cache's lock): one frozen or blocked loop stops the pings, and
    /// systemd restarts us. The answer that is late is logged once, not every round.
    private func watchdog(every interval: Duration) async {
        logger.info(
            "watchdog enabled",
            metadata: ["watchdog.interval_ms": "\(interval.components.seconds * 1000 + interval.components.attoseconds / 1_000_000_000_000_000)"])
        var withholding = false
        while !Task.isCancelled {
            let round = ContinuousClock.now
            if await servingLoops().allAnswer(within: interval) {
                notifier.watchdog()
                if withholding { logger.notice("watchdog: every serving loop answers again; WATCHDOG=1 resumed") }
                withholding = false
            } else if !withholding {
                logger.error("watchdog: a loop that serves callers did not answer; withholding WATCHDOG=1")
                withholding = true
            }
            try? await Task.sleep(until: round + interval)
        }
    }

    // MARK: Reload

    /// SIGHUP is always trapped: without a configuration to re-read (dev mode) it is
    /// logged and ignored rather than killing the daemon.
    private func reloadOnHangup() async {
        for await _ in await UnixSignalsSequence(trapping: .sighup) {
            guard let reload else {
                logger.notice("SIGHUP ignored: there is no configuration file to reload in this mode")
                continue
            }
            notifier.reloading()
            do {
                let outcome = try runtime.reload(to: try reload())
                runtime.logReload(outcome, logger: logger)
                let restart = outcome.needRestart.isEmpty ? "" : "\(outcome.needRestart.joined(separator: ", ")) take effect at the next restart; "
                notifier.ready(status: "reloaded; " + restart + statusLine())
            } catch let error as ConfigurationError {
                for issue in error.issues {
                    logger.error("reload rejected: \(issue)", metadata: ["config.origin": "\(error.origin)", "config.path": "\(issue.path)"])
                }
                notifier.ready(
                    status: "reload failed (\(error.issues.count) problem\(error.issues.count == 1 ? "" : "s")); kept the previous configuration; "
                        + statusLine())
            } catch {
                logger.error("reload rejected", metadata: ["error.message": "\(error)"])
                notifier.ready(status: "reload failed; kept the previous configuration; " + statusLine())
            }
        }
    }
}
