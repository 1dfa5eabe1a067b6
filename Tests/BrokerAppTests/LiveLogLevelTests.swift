import Logging
import Testing

@testable import BrokerApp

/// `log.level` changes every logger at once, including copies made before the change.
@Suite("Live log level")
struct LiveLogLevelTests {
    @Test("a logger made before the change follows it; the audit ceiling keeps info records")
    func loggersFollowTheLevel() {
        let captured = CapturedRecords()
        let live = LiveLogLevel(.info)
        let make = { (label: String, ceiling: Logger.Level) in
            Logger(label: label) { label in
                LiveLevelLogHandler(inner: CapturedRecords.Handler(label: label, sink: captured), live: live, ceiling: ceiling)
            }
        }
        let daemon = make("tokenbrokerd", .critical)
        let audit = make("tokenbroker.audit", .info)
        daemon.debug("hidden")
        live.level = .debug
        daemon.debug("shown")
        live.level = .error
        daemon.warning("hidden too")
        audit.info("token granted")
        #expect(captured.all.map(\.message) == ["shown", "token granted"])
        for level in Logger.Level.allCases {
            live.level = level
            #expect(live.level == level)
        }
    }
}
