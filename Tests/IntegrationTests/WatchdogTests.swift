import Foundation
import OffPool
import Testing

/// The watchdog pings only while what serves callers runs, and nothing that serves
/// callers waits for the log sink.
@Suite("Watchdog and log sink", .serialized)
struct WatchdogTests {
    @Test("a frozen socket loop stops WATCHDOG=1 (systemd restarts the broker); the pings resume when it runs again")
    func frozenLoopStopsThePings() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (notify, environment) = try NotifySocket.make(in: directory, extra: ["WATCHDOG_USEC": "400000"])
        defer { notify.close() }
        try await Scenario.run(environment: environment) { scenario in
            func pings() -> Int { notify.received.filter { $0 == "WATCHDOG=1" }.count }
            try await waitUntil("three watchdog pings") { pings() >= 3 }
            let pid = scenario.broker.process.process.processIdentifier
            let tid = try #require(Self.thread(named: "tokenbroker-0", of: pid), "the socket's loop thread")

            // As a debugger would: stop that one thread; the rest of the daemon runs on.
            let freezer = try await offPool { try FrozenThread(tid: tid) }
            defer { freezer.release() }
            try await Task.sleep(for: .milliseconds(500))  // a ping already under way may still land
            let before = pings()
            try await Task.sleep(for: .milliseconds(1500))
            #expect(pings() == before, "no WATCHDOG=1 while the loop that serves the socket is stopped")
            #expect(scenario.broker.process.stderr.contains("withholding WATCHDOG=1"))

            freezer.release()
            await exited(freezer.process)
            try await waitUntil("pings again") { pings() >= before + 2 }
            #expect(try await scenario.broker.request(#"{"op":"ping"}"#).ok)
        }
    }

    @Test("a stderr pipe nobody reads does not stall the socket: every request is answered")
    func blockedLogSinkDoesNotBlockServing() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let provider = try await DevProvider(directory: directory)
        defer { Task { await provider.stop() } }
        let socketPath = "\(directory)/broker.sock"
        let configPath = "\(directory)/config.yaml"
        try BrokerDaemon.configurationYAML(
            socketPath: socketPath, provider: provider, identities: [.init(name: "default", tokenFile: provider.endpoints.tokenFile)],
            logLevel: "debug"
        ).write(toFile: configPath, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestEnvironment.daemonPath)
        process.arguments = ["--config", configPath, "--log-format", "text"]
        let unread = Pipe()  // 64 KiB of log lines fill it; nobody ever reads
        process.standardError = unread
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        try await killing(process) {
            try await waitUntil("the broker socket") { FileManager.default.fileExists(atPath: socketPath) }

            // Each answer writes a debug line and an audit record: thousands of lines, far
            // more than the pipe holds.
            let answered = try await offPool { () -> Int in
                let connection = try UnixSocketConnection(path: socketPath, timeoutSeconds: 10)
                var answered = 0
                for id in 0..<3000 {
                    try connection.send(#"{"op":"token","scope":"\#(Scenario.scope)","id":\#(id),"minValiditySeconds":\#(60 + id % 7)}"# + "\n")
                    _ = try connection.readJSONLine()  // an answer (a cached token: never throttled)
                    answered += 1
                }
                return answered
            }
            #expect(answered == 3000)
            #expect(process.isRunning)
        }
    }

    /// The TID of `pid`'s thread called `name` (`/proc/PID/task/TID/comm`).
    static func thread(named name: String, of pid: Int32) -> Int32? {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.compactMap(Int32.init).first { tid in
            (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) == name
        }
    }
}

/// One thread of another process held stopped with ptrace
/// (Fixtures/python/freeze_thread.py) until `release()`.
final class FrozenThread: @unchecked Sendable {
    let process = Process()
    private let input = Pipe()
    private let lock = NSLock()
    private var released = false

    init(tid: Int32) throws {
        process.executableURL = URL(fileURLWithPath: TestEnvironment.python)
        process.arguments = ["\(TestEnvironment.fixtures)/python/freeze_thread.py", "\(tid)"]
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let line = output.fileHandleForReading.availableData
        guard String(decoding: line, as: UTF8.self).contains("frozen") else {
            release()
            throw HarnessError("could not freeze thread \(tid)")
        }
    }

    /// Lets the thread run again: closing stdin makes the helper detach and exit (`exited`
    /// waits for that; a `defer` cannot, and the helper exits on its own).
    func release() {
        let first = lock.withLock { () -> Bool in
            defer { released = true }
            return !released
        }
        guard first else { return }
        try? input.fileHandleForWriting.close()
    }
}
