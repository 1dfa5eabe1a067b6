import BrokerServer
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// One record per authorization decision on a token request — granted, denied,
/// throttled, or granted but failed — under its own logger label
/// (`tokenbroker.audit`) so that operators can route it apart from the daemon's log.
///
/// Records are rate-limited by a token bucket, so a flood of requests cannot fill the
/// disk: records beyond it are counted, and the count is logged as one
/// "N audit records suppressed" record at most once per `summaryInterval` — from
/// `run()`, or with the next record that passes once the interval is over. Records
/// never contain a token or an assertion.
final class AuditLog<C: Clock>: Service, Sendable where C.Duration == Duration {
    /// The logger label of audit records.
    static var label: String { "tokenbroker.audit" }

    /// What happened to a request.
    enum Outcome: String, Sendable {
        /// A token was served.
        case granted
        /// The caller may not use the identity (or none).
        case denied
        /// The caller's uid exceeded its request rate.
        case throttled
        /// The caller was allowed, but no token could be had (see `error.code`).
        case failed
    }

    private let logger: Logger
    private let clock: C
    private let summaryInterval: Duration
    private let state: Mutex<(bucket: TokenBucket<C.Instant>, suppressed: Int, lastSummary: C.Instant)>
    /// Under load nearly every record is suppressed, on every request: until the bucket
    /// has a token again (nanoseconds after `origin`) they are only counted, without the
    /// lock that the event loops would otherwise contend for.
    private let origin: C.Instant
    private let emptyUntil = Atomic<Int64>(.min)
    private let suppressedWithoutLock = Atomic<Int>(0)

    /// An audit log passing `recordsPerSecond` with bursts of `burst`.
    init(logger: Logger, clock: C, recordsPerSecond: Int = 20, burst: Int = 200, summaryInterval: Duration = .seconds(10)) {
        self.logger = logger
        self.clock = clock
        self.summaryInterval = summaryInterval
        let now = clock.now
        self.origin = now
        self.state = Mutex((TokenBucket(ratePerSecond: Double(recordsPerSecond), capacity: Double(burst), now: now), 0, now))
    }

    /// Records one decision, made at `instant` (read from the clock when not given), for
    /// `answers` identical requests answered at once (a pipelined run): one record, which
    /// says how many (`audit.answers`) when more than one; suppressed, it counts as many.
    func record(
        _ outcome: Outcome, identity: String?, scope: String?, peer: PeerCredentials, errorCode: String? = nil, at instant: C.Instant? = nil,
        answers: Int = 1
    ) {
        let now = instant ?? clock.now
        // Compared as durations: the nanoseconds of `now` would take two 128-bit divisions,
        // a tenth of a repeated answer's cost.
        let sinceOrigin = origin.duration(to: now)
        if sinceOrigin < .nanoseconds(emptyUntil.load(ordering: .relaxed)) {
            suppressedWithoutLock.add(answers, ordering: .relaxed)
            return
        }
        let (admitted, suppressed) = state.withLock { state -> (Bool, Int) in
            if let wait = state.bucket.take(at: now) {
                state.suppressed += answers
                emptyUntil.store(TimeAmount(sinceOrigin).nanoseconds &+ min(TimeAmount(wait).nanoseconds, Int64.max / 2), ordering: .relaxed)
                return (false, 0)
            }
            guard state.lastSummary.advanced(by: summaryInterval) <= now else { return (true, 0) }
            let total = state.suppressed + suppressedWithoutLock.exchange(0, ordering: .relaxed)
            guard total > 0 else { return (true, 0) }
            state.suppressed = 0
            state.lastSummary = now
            return (true, total)
        }
        guard admitted else { return }
        if suppressed > 0 { logSuppressed(suppressed) }
        var metadata: Logger.Metadata = [
            "audit.outcome": "\(outcome.rawValue)",
            "token.identity": "\(identity ?? "")",
        ]
        metadata.merge(peer.knownMetadata) { _, new in new }
        if let scope { metadata["token.scope"] = "\(scope)" }
        if let exe = peer.executable { metadata["peer.exe"] = "\(exe)" }
        if let cgroup = peer.cgroup { metadata["peer.cgroup"] = "\(cgroup)" }
        if let errorCode { metadata["error.code"] = "\(errorCode)" }
        if answers > 1 { metadata["audit.answers"] = "\(answers)" }
        logger.log(level: outcome == .granted ? .info : .notice, "token \(outcome.rawValue)", metadata: metadata)
    }

    /// Logs the count of records suppressed since the last record, if any.
    func flushSuppressed() {
        let now = clock.now
        let suppressed = state.withLock { state in
            defer {
                state.suppressed = 0
                state.lastSummary = now
            }
            return state.suppressed + suppressedWithoutLock.exchange(0, ordering: .relaxed)
        }
        if suppressed > 0 { logSuppressed(suppressed) }
    }

    /// Reports suppressed records every `summaryInterval` until shutdown.
    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await self.clock.sleep(for: self.summaryInterval)
                self.flushSuppressed()
            }
        }
        flushSuppressed()
    }

    private func logSuppressed(_ count: Int) {
        logger.notice("\(count) audit records suppressed", metadata: ["audit.outcome": "suppressed", "audit.suppressed": "\(count)"])
    }
}

extension PeerCredentials {
    /// `peer.uid`, `peer.gid`, `peer.pid` as far as they are known: a loopback TCP caller has
    /// a uid from the socket table and no pid or gid, so no `pid=0` or `gid=4294967295`.
    var knownMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = [:]
        if uid != UInt32.max { metadata["peer.uid"] = "\(uid)" }
        if gid != UInt32.max { metadata["peer.gid"] = "\(gid)" }
        if pid > 0 { metadata["peer.pid"] = "\(pid)" }
        return metadata
    }
}
