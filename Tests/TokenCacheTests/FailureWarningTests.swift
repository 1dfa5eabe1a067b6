import Foundation
import Logging
import ManualClock
import Testing
import TokenCache
import TokenExchange

/// One caller inventing scopes for an identity that cannot get tokens must not fill the log.
@Suite struct FailureWarnings {
    static let message = "token exchange failed"

    @Test func aFloodOfFailingScopesLogsOneWarningPerIntervalAndCountsTheRest() async {
        let log = RecordingLogHandler()
        let f = CacheFixture(logger: log.logger)
        f.fetcher.answer(.failure(CacheFixture.unavailable))
        for i in 0..<500 { _ = try? await f.token(Scope("invented-\(i)")) }
        #expect(f.fetcher.callCount == 500)  // the limit is on the log, not on the exchanges
        #expect(log.records(Self.message, level: .warning).count == 1)
        #expect(log.records(Self.message, level: .debug).count == 499)

        f.clock.advance(by: .seconds(10))
        _ = try? await f.token(Scope("invented-after"))
        let warnings = log.records(Self.message, level: .warning)
        #expect(warnings.count == 2)
        #expect(warnings.last?.metadata["log.suppressed"] == "499")
    }

    @Test func anotherErrorCodeIsWarnedAboutAtOnce() async {
        let log = RecordingLogHandler()
        let f = CacheFixture(logger: log.logger)
        f.fetcher.answer(.failure(CacheFixture.unavailable))
        for i in 0..<3 { _ = try? await f.token(Scope("a-\(i)")) }
        f.fetcher.answer(.failure(TokenExchangeError(code: .upstreamRejected, message: "AADSTS70021", isRetryable: false)))
        for i in 0..<3 { _ = try? await f.token(Scope("b-\(i)")) }
        #expect(log.records(Self.message, level: .warning).map { $0.metadata["error.code"] } == ["upstream_unavailable", "upstream_rejected"])
    }

    @Test func suppressedWarningsAreReportedByTheRefresherOnceTheIntervalIsOver() async {
        let log = RecordingLogHandler()
        let f = CacheFixture(logger: log.logger)
        f.fetcher.answer(.failure(CacheFixture.unavailable))
        for i in 0..<5 { _ = try? await f.token(Scope("invented-\(i)")) }
        await f.cache.refreshDue()
        #expect(log.records.filter { $0.level == .warning }.count == 1)
        f.clock.advance(by: .seconds(10))
        await f.cache.refreshDue()
        let summary = log.records.filter { $0.level == .warning }.last
        #expect(summary?.message == "token exchange failures not logged")
        #expect(summary?.metadata["log.suppressed"] == "4")
        #expect(summary?.metadata["error.code"] == "upstream_unavailable")
    }
}
