import ExecPlugins
import Foundation
import Logging
import Synchronization
import Testing
import TokenExchange

/// Collects log records in memory.
private final class RecordingHandler: LogHandler, Sendable {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let storage = Mutex<[Record]>([])
    var records: [Record] { storage.withLock { $0 } }

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

    func log(event: LogEvent) {
        let record = Record(level: event.level, message: "\(event.message)", metadata: (event.metadata ?? [:]).mapValues { "\($0)" })
        storage.withLock { $0.append(record) }
    }
}

@Suite("Logging of plugin runs")
struct PluginLoggingTests {
    @Test("one debug line per run with name, outcome and sizes, never the output")
    func oneDebugLine() async throws {
        let handler = RecordingHandler()
        let logger = Logger(label: "test") { _ in handler }
        let configuration = Plugins.configuration("exchange-good.sh", environment: ["PLUGIN_TOKEN": "very-secret-access-token"])
        let exchanger = ExecExchanger(configuration: configuration, name: "sts", now: { Date() }, logger: logger)
        _ = try await exchanger.exchange(Plugins.assertion(), for: Plugins.scope)
        _ = await Plugins.error {
            try await ExecExchanger(
                configuration: Plugins.configuration("fail.sh", environment: ["PID_FILE": "/dev/null"]), name: "sts", now: { Date() }, logger: logger
            )
            .exchange(Plugins.assertion(), for: Plugins.scope)
        }

        let records = handler.records
        #expect(records.count == 2)
        #expect(records.allSatisfy { $0.level == .debug })
        #expect(records.map { $0.metadata["plugin.name"] } == ["sts", "sts"])
        #expect(records.map { $0.metadata["plugin.outcome"] } == ["exit 0", "exit 3"])
        #expect(records[0].metadata["plugin.command"] == Plugins.path("exchange-good.sh"))
        #expect(Int(records[0].metadata["plugin.stdout_bytes"] ?? "") ?? 0 > 0)
        #expect(records[0].metadata["plugin.duration_ms"] != nil)
        let everything = records.map { "\($0.message) \($0.metadata)" }.joined()
        #expect(!everything.contains("very-secret-access-token"))
        #expect(!everything.contains("eyJ"))
    }
}
