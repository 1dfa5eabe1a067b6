import FoundationEssentials
import Glibc
public import Logging
import PlainJSON
import SystemdSupport
import TokenExchange

/// Chooses how the daemon logs: natively to journald when stderr is the journal
/// (`JOURNAL_STREAM` matches), JSON lines for containers, else plain lines.
public enum LogSetup {
    /// `--log-format`.
    public enum Format: String, CaseIterable, Sendable {
        /// journald when stderr is the journal, else text.
        case auto
        /// Plain lines on stderr.
        case text
        /// One JSON object per line on stderr.
        case json
        /// journald via `sd_journal_sendv`.
        case journal
    }

    /// Bootstraps swift-log once for the process and returns the daemon's logger. The level
    /// is `LiveLogLevel.shared`'s: a reload that changes `log.level` changes every logger.
    public static func bootstrap(format: Format, level: String, environment: [String: String], label: String = "tokenbrokerd") -> Logger {
        let live = LiveLogLevel.shared
        live.level = Logger.Level(rawValue: LogLevelName.parse(level) ?? "info") ?? .info
        let resolved: Format = format == .auto ? (JournalLogHandler.stderrIsJournal(environment: environment) ? .journal : .text) : format
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler
            switch resolved {
            case .journal: handler = JournalLogHandler(label: label)
            case .json: handler = JSONLinesLogHandler(label: label)
            case .text, .auto: handler = StreamLogHandler.standardError(label: label)
            }
            // Audit records (info and notice) are kept whatever the daemon's verbosity;
            // route them by their label rather than silence them with log.level.
            handler.logLevel = .trace
            // Levels live (reload), records written on the log thread: a sink that blocks
            // never stalls a serving loop.
            let live = LiveLevelLogHandler(inner: handler, live: live, ceiling: label == "tokenbroker.audit" ? .info : .critical)
            return QueuedLogHandler(inner: live, queue: .shared)
        }
        return Logger(label: label)
    }

    /// Writes what is queued before the process exits (at most 2 s: the sink may be stuck).
    public static func flush() {
        LogQueue.shared.flush()
    }
}

/// One JSON object per log record on stderr: `time`, `level`, `message`, `label`,
/// `source`, then the metadata keys as given (`token.identity`, `peer.uid`, …).
struct JSONLinesLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    let label: String

    init(label: String) {
        self.label = label
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var object: [String: String] = [
            "time": Timestamp.iso8601(Date()),
            "level": event.level.rawValue,
            "message": "\(event.message)",
            "label": label,
            "source": event.source,
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { _, new in new }) {
            object[key] = "\(value)"
        }
        var line = UntypedJSON.serialize(object)
        line.append(UInt8(ascii: "\n"))
        _ = writeAll(2, line)  // nowhere to report that stderr failed
    }
}
