import Logging
import Synchronization

/// A log handler that keeps every record, for asserting what was (and was not) logged.
final class RecordingLogHandler: LogHandler, Sendable {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
    }

    private let storage = Mutex<[Record]>([])
    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }
    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    var records: [Record] { storage.withLock { $0 } }

    func records(_ message: String, level: Logger.Level) -> [Record] {
        records.filter { $0.message == message && $0.level == level }
    }

    func log(event: LogEvent) {
        let record = Record(level: event.level, message: "\(event.message)", metadata: event.metadata ?? [:])
        storage.withLock { $0.append(record) }
    }

    var logger: Logger { Logger(label: "test") { _ in self } }
}
