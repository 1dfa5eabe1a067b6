import BrokerServer
import Foundation
import Logging
import ManualClock
import Synchronization
import Testing

@testable import BrokerApp

/// The per-uid request rate, driven by a manual clock.
@Suite("Per-uid request rate")
struct RateLimiterTests {
    @Test("a uid gets its burst, then waits for the rate; other uids are unaffected")
    func burstThenRate() {
        let clock = ManualClock()
        let limiter = RateLimiter(ratePerSecond: 10, burst: 3, clock: clock)
        #expect((0..<3).allSatisfy { _ in limiter.admit(uid: 1000) == nil })
        let wait = limiter.admit(uid: 1000)
        #expect(wait == .milliseconds(100))
        #expect(limiter.admit(uid: 1001) == nil, "another uid has its own bucket")
        clock.advance(by: .milliseconds(100))
        #expect(limiter.admit(uid: 1000) == nil)
        #expect(limiter.admit(uid: 1000) != nil)
        clock.advance(by: .seconds(60))
        #expect((0..<3).allSatisfy { _ in limiter.admit(uid: 1000) == nil }, "refills to the burst, not beyond")
        #expect(limiter.admit(uid: 1000) != nil)
    }

    @Test("rate 0 admits everything")
    func unlimited() {
        let limiter = RateLimiter(ratePerSecond: 0, burst: 1, clock: ManualClock())
        #expect((0..<10_000).allSatisfy { _ in limiter.admit(uid: 7) == nil })
        #expect(limiter.trackedUIDs == 0)
    }

    @Test("a reload's rate applies at once; rate 0 turns the limit off and back on")
    func reconfigure() {
        let limiter = RateLimiter(ratePerSecond: 0, burst: 1, clock: ManualClock())
        #expect((0..<100).allSatisfy { _ in limiter.admit(uid: 1) == nil })
        limiter.reconfigure(ratePerSecond: 1, burst: 2)
        #expect(limiter.admit(uid: 1) == nil && limiter.admit(uid: 1) == nil)
        #expect(limiter.admit(uid: 1) == .seconds(1))
        limiter.reconfigure(ratePerSecond: 0, burst: 2)
        #expect(limiter.admit(uid: 1) == nil)
    }

    @Test("buckets of idle uids are dropped, so the table stays bounded")
    func boundedTable() {
        let clock = ManualClock()
        let limiter = RateLimiter(ratePerSecond: 100, burst: 5, clock: clock, pruneThreshold: 64)
        for uid in UInt32(0)..<64 { _ = limiter.admit(uid: uid) }
        #expect(limiter.trackedUIDs == 64)
        // 200 more uids, one request each, 10 ms apart: a bucket that lost one token is
        // full again 10 ms later, so each new uid finds the earlier ones idle.
        for uid in UInt32(1000)..<1200 {
            clock.advance(by: .milliseconds(10))
            _ = limiter.admit(uid: uid)
        }
        #expect(limiter.trackedUIDs <= 65)
        // Busy uids are never dropped (that would reset their bucket).
        let busy = RateLimiter(ratePerSecond: 1, burst: 5, clock: clock, pruneThreshold: 64)
        for uid in UInt32(0)..<100 { _ = busy.admit(uid: uid) }
        #expect(busy.trackedUIDs == 100)
    }
}

/// A log handler that keeps records in memory (records are what the audit log is for).
final class CapturedRecords: @unchecked Sendable {
    struct Record { var level: Logger.Level; var message: String; var metadata: Logger.Metadata; var label: String }
    private let records = Mutex<[Record]>([])

    func logger(label: String) -> Logger {
        Logger(label: label) { label in Handler(label: label, sink: self) }
    }

    var all: [Record] { records.withLock { $0 } }
    func append(_ record: Record) { records.withLock { $0.append(record) } }

    struct Handler: LogHandler {
        let label: String
        let sink: CapturedRecords
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            sink.append(
                Record(level: event.level, message: "\(event.message)", metadata: metadata.merging(event.metadata ?? [:]) { $1 }, label: label))
        }
    }
}

@Suite("Audit log")
struct AuditLogTests {
    static let peer = PeerCredentials(pid: 4242, uid: 1000, gid: 1000, executable: "/usr/bin/app", cgroup: "/system.slice/app.service")

    @Test("one record per decision, with identity, scope, peer and outcome, under its own label")
    func recordContents() {
        let captured = CapturedRecords()
        let audit = AuditLog(logger: captured.logger(label: AuditLog<ManualClock>.label), clock: ManualClock())
        audit.record(.granted, identity: "storage", scope: "https://storage.azure.com/.default", peer: Self.peer)
        audit.record(
            .denied, identity: "storage", scope: "https://storage.azure.com/.default", peer: PeerCredentials(pid: 7, uid: 1001, gid: 1001),
            errorCode: "forbidden")
        let records = captured.all
        #expect(records.count == 2)
        #expect(records.allSatisfy { $0.label == "tokenbroker.audit" })
        #expect(records[0].message == "token granted" && records[0].level == .info)
        #expect(records[0].metadata["audit.outcome"] == "granted")
        #expect(records[0].metadata["token.identity"] == "storage")
        #expect(records[0].metadata["token.scope"] == "https://storage.azure.com/.default")
        #expect(records[0].metadata["peer.uid"] == "1000" && records[0].metadata["peer.pid"] == "4242")
        #expect(records[0].metadata["peer.exe"] == "/usr/bin/app")
        #expect(records[1].message == "token denied" && records[1].level == .notice)
        #expect(records[1].metadata["peer.exe"] == nil, "an unattested executable is left out, not invented")
        #expect(records[1].metadata["error.code"] == "forbidden")
    }

    @Test("a flood is cut to the bucket; the rest is counted in one record")
    func floodIsSuppressedAndCounted() {
        let captured = CapturedRecords()
        let clock = ManualClock()
        let audit = AuditLog(logger: captured.logger(label: "tokenbroker.audit"), clock: clock, recordsPerSecond: 10, burst: 20)
        for _ in 0..<10_000 { audit.record(.denied, identity: "x", scope: "s", peer: Self.peer, errorCode: "forbidden") }
        #expect(captured.all.count == 20)
        // One second refills 10: within the summary interval, records that pass come alone.
        clock.advance(by: .seconds(1))
        audit.record(.granted, identity: "x", scope: "s", peer: Self.peer)
        for _ in 0..<100 { audit.record(.denied, identity: "x", scope: "s", peer: Self.peer, errorCode: "forbidden") }
        #expect(captured.all.count == 30)
        #expect(!captured.all.contains { $0.message.contains("suppressed") })
        // Once the interval is over, the count comes first, once: 9,980 + 91.
        clock.advance(by: .seconds(9))
        audit.record(.granted, identity: "x", scope: "s", peer: Self.peer)
        audit.record(.granted, identity: "x", scope: "s", peer: Self.peer)
        let records = captured.all
        #expect(records.count == 33, "\(records.map(\.message))")
        #expect(records[30].message == "10071 audit records suppressed")
        #expect(records[30].metadata["audit.suppressed"] == "10071")
        #expect(records[31].message == "token granted" && records[32].message == "token granted")
    }

    @Test("records from many threads at once: every one is either logged or counted")
    func concurrentRecordsAreAllAccountedFor() {
        let captured = CapturedRecords()
        let clock = ManualClock()
        let audit = AuditLog(logger: captured.logger(label: "tokenbroker.audit"), clock: clock, recordsPerSecond: 10, burst: 20)
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<5_000 { audit.record(.granted, identity: "x", scope: "s", peer: Self.peer) }
        }
        #expect(captured.all.count == 20)
        clock.advance(by: .seconds(10))
        audit.flushSuppressed()
        #expect(captured.all.last?.message == "19980 audit records suppressed")
    }

    @Test("suppressed records are reported by the periodic summary too")
    func periodicSummary() async throws {
        let captured = CapturedRecords()
        let clock = ManualClock()
        let audit = AuditLog(
            logger: captured.logger(label: "tokenbroker.audit"), clock: clock, recordsPerSecond: 1, burst: 1, summaryInterval: .seconds(10))
        let runner = Task { try await audit.run() }
        for _ in 0..<5 { audit.record(.throttled, identity: nil, scope: nil, peer: Self.peer, errorCode: "throttled") }
        await clock.waitForSleepers(1)
        clock.advance(by: .seconds(10))
        await clock.waitForSleepers(1)
        runner.cancel()
        _ = try? await runner.value
        #expect(captured.all.map(\.message) == ["token throttled", "4 audit records suppressed"])
    }
}
