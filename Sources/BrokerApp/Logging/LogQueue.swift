import DetachedThread
import Dispatch
import FoundationEssentials
import Glibc
import Logging
import Synchronization

/// Hands log records to their sink (stderr, the journal) on a thread of its own, so that
/// no thread that serves callers ever waits for a log write. A full pipe that nobody reads,
/// a stalled journald or a slow terminal blocks only this thread; while it is blocked at
/// most `capacity` records wait, and the rest are dropped and counted (one warning says
/// how many once the sink takes records again), as the audit log does with its own.
final class LogQueue: Sendable {
    /// Records waiting at most; past that, new ones are dropped.
    static let capacity = 4096

    private struct Pending {
        var records: [(handler: any LogHandler, event: LogEvent)] = []
        var dropped = 0
        var writerIdle = false
        var written: UInt64 = 0
        var enqueued: UInt64 = 0
    }

    private let state = Mutex(Pending())
    private let wakeup = DispatchSemaphore(value: 0)

    /// The queue every handler of this process writes through.
    static let shared: LogQueue = {
        let queue = LogQueue()
        DetachedThread.start { queue.runWriter() }
        return queue
    }()

    /// Queues `event` for `handler`; never blocks (beyond a lock held for an append).
    func enqueue(_ event: LogEvent, to handler: any LogHandler) {
        let signal = state.withLock { state -> Bool in
            guard state.records.count < Self.capacity else {
                state.dropped += 1
                return false
            }
            state.records.append((handler, event))
            state.enqueued += 1
            guard state.writerIdle else { return false }
            state.writerIdle = false
            return true
        }
        if signal { wakeup.signal() }
    }

    /// Waits until what was queued before the call is written, at most `timeout` (the sink
    /// may be the thing that is stuck): called before the process exits.
    func flush(timeout: Duration = .seconds(2)) {
        let target = state.withLock { $0.enqueued }
        let deadline = ContinuousClock.now + timeout
        while state.withLock({ $0.written }) < target, ContinuousClock.now < deadline {
            usleep(1000)
        }
    }

    private func runWriter() {
        while true {
            let batch = state.withLock { state -> (records: [(handler: any LogHandler, event: LogEvent)], dropped: Int)? in
                guard !state.records.isEmpty else {
                    state.writerIdle = true
                    return nil
                }
                defer {
                    state.records.removeAll(keepingCapacity: true)
                    state.dropped = 0
                }
                return (state.records, state.dropped)
            }
            guard let batch else {
                wakeup.wait()
                continue
            }
            for record in batch.records { record.handler.log(event: record.event) }
            if batch.dropped > 0, let handler = batch.records.last?.handler {
                handler.log(
                    event: LogEvent(
                        level: .warning, message: "\(batch.dropped) log records dropped: the log sink did not keep up (the daemon kept serving)",
                        metadata: ["log.dropped": "\(batch.dropped)"], source: "BrokerApp", file: #fileID, function: #function, line: #line))
            }
            state.withLock { $0.written += UInt64(batch.records.count) }
        }
    }
}

/// A log handler that passes records to `inner` through the `LogQueue`: what callers'
/// threads pay for a log line is an append.
struct QueuedLogHandler: LogHandler {
    var inner: any LogHandler
    let queue: LogQueue

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        queue.enqueue(event, to: inner)
    }
}
