public import Logging
import Synchronization

/// The daemon's log level, changeable while it runs (`log.level` on reload). Every
/// handler `LogSetup` makes reads it, so a change reaches every `Logger` already handed
/// out — including copies held by long-lived services.
public final class LiveLogLevel: Sendable {
    private let raw: Atomic<UInt8>

    /// The process's level, set by `LogSetup.bootstrap` and by a reload.
    public static let shared = LiveLogLevel(.info)

    /// A level starting at `level`.
    public init(_ level: Logger.Level) {
        raw = Atomic(Self.index(level))
    }

    /// The current level. Read at every log call's level check: one atomic load and an
    /// index into a table built once (`allCases` would build an array per call).
    public var level: Logger.Level {
        get { Self.levels[Int(raw.load(ordering: .relaxed))] }
        set { raw.store(Self.index(newValue), ordering: .relaxed) }
    }

    private static let levels = Logger.Level.allCases

    private static func index(_ level: Logger.Level) -> UInt8 {
        UInt8(levels.firstIndex(of: level) ?? 2)
    }
}

/// Forwards to another handler, with the level read from a `LiveLogLevel` at every
/// record (capped at `ceiling` for labels that must keep their records, the audit log).
struct LiveLevelLogHandler: LogHandler {
    var inner: any LogHandler
    let live: LiveLogLevel
    /// The least verbose level this handler ever uses (`.critical`: no cap).
    let ceiling: Logger.Level

    var logLevel: Logger.Level {
        get { min(live.level, ceiling) }
        // Levels change for the whole process, through `LiveLogLevel`.
        set {}
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        inner.log(event: event)
    }
}
