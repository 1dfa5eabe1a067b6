import Foundation
import Glibc
import Testing

/// Sinks that must not be written, and sinks that come and go with SIGHUP.
@Suite("Sinks refuse unsafe paths and follow reloads")
struct SinkSafetyTests {
    static let scope = Scenario.scope

    static func sinkLine(_ path: String) -> String {
        "  - { identity: default, scope: \"\(scope)\", path: \(path) }\n"
    }

    @Test(
        "check-config refuses a symlinked path and a directory others can write, naming them",
        arguments: ["symlink", "others-writable", "foreign-owner"])
    func checkConfigRefuses(_ kind: String) async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let sinks = "\(directory)/sinks"
        #expect(mkdir(sinks, 0o755) == 0)
        var path = "\(sinks)/token"
        let expected: String
        switch kind {
        case "symlink":
            #expect(symlink("\(directory)/elsewhere", path) == 0)
            expected = "is a symbolic link"
        case "others-writable":
            #expect(chmod(sinks, 0o777) == 0)
            expected = "is writable by others (mode 0777)"
        default:
            let nobody = try #require(getpwnam("nobody")).pointee.pw_uid
            #expect(chown(sinks, nobody, getgid()) == 0)
            path = "\(sinks)/token"
            expected = "is owned by uid \(nobody)"
        }
        let yaml = CheckConfigTests.identity + "sinks:\n  - { identity: x, scope: s, path: \(path) }\n"
        try yaml.write(toFile: "\(directory)/config.yaml", atomically: true, encoding: .utf8)
        let result = try await CheckConfigTests.run(["check-config", "--config", "\(directory)/config.yaml"], in: directory, name: "check")
        #expect(result.status == 78, "\(result.stderr)")
        #expect(result.stderr.contains("sinks[0].path") && result.stderr.contains(expected), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "\(directory)/elsewhere"), "nothing written through the link")
    }

    @Test("a path that becomes a symlink, or a directory that becomes writable by others, is not written; status says why")
    func refusedAtRuntime() async throws {
        let sinks = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: sinks) }
        #expect(chmod(sinks, 0o755) == 0)
        let path = "\(sinks)/token", target = "\(sinks)/target"
        let yaml = "cache: { minRefreshIntervalSeconds: 0 }\nsinks:\n" + Self.sinkLine(path)
        try await Scenario.run(logLevel: "info", extraYAML: yaml) { scenario in
            try await waitUntil("the first token") { ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").isEmpty == false }
            try "not a token".write(toFile: target, atomically: false, encoding: .utf8)
            #expect(unlink(path) == 0 && symlink(target, path) == 0)
            let refresh = #"{"op":"token","identity":"default","scope":"\#(Self.scope)","minValiditySeconds":4000}"#
            #expect(try await scenario.broker.request(refresh).ok)
            try await waitUntil("status to report the symlink") { try await Self.sinkError(scenario) == "symlink" }
            let metrics = try await runCommand(
                "/usr/bin/curl", ["-sS", "--fail", "--unix-socket", scenario.broker.socketPath, "http://localhost/metrics"]
            ).stdout
            #expect(
                metrics.contains("tokenbroker_sink_failing{path=\"\(path)\"} 1"), "\(metrics.split(separator: "\n").filter { $0.contains("sink") })")
            #expect(metrics.contains("tokenbroker_sink_writes_total{path=\"\(path)\",outcome=\"symlink\"}"))
            #expect(try String(contentsOfFile: target, encoding: .utf8) == "not a token", "the link's target is untouched")
            var info = Glibc.stat()
            #expect(lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFLNK, "the link itself was not replaced")

            #expect(unlink(path) == 0 && chmod(sinks, 0o777) == 0)
            #expect(try await scenario.broker.request(refresh).ok)
            try await waitUntil("status to report the directory") { try await Self.sinkError(scenario) == "unsafe_directory" }
            #expect(!FileManager.default.fileExists(atPath: path), "nothing written into a directory others can write")

            #expect(chmod(sinks, 0o755) == 0)
            #expect(try await scenario.broker.request(refresh).ok)
            try await waitUntil("the file to come back") { FileManager.default.fileExists(atPath: path) }
            try await waitUntil("the error to clear") { try await Self.sinkError(scenario) == nil }
        }
    }

    @Test("SIGHUP adds a sink (its file appears) and removing it stops it and deletes its file")
    func reloadAddsAndRemoves() async throws {
        let sinks = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: sinks) }
        #expect(chmod(sinks, 0o755) == 0)
        let first = "\(sinks)/first", second = "\(sinks)/second"
        try await Scenario.run(logLevel: "info", extraYAML: "sinks:\n" + Self.sinkLine(first)) { scenario in
            try await waitUntil("the first sink") { FileManager.default.fileExists(atPath: first) }
            let original = try String(contentsOfFile: scenario.broker.configPath, encoding: .utf8)
            try original.replacingOccurrences(of: Self.sinkLine(first), with: Self.sinkLine(first) + Self.sinkLine(second))
                .write(toFile: scenario.broker.configPath, atomically: true, encoding: .utf8)
            try await ConfigurationReloadTests.reload(scenario, expect: "configuration reloaded")
            try await waitUntil("the added sink") { FileManager.default.fileExists(atPath: second) }
            #expect(
                try String(contentsOfFile: first, encoding: .utf8) == String(contentsOfFile: second, encoding: .utf8), "one cached token, two files")

            // A changed sink whose file already holds the right bytes keeps that file (same inode).
            var before = Glibc.stat(), after = Glibc.stat()
            #expect(lstat(second, &before) == 0)
            let changed = "  - { identity: default, scope: \"\(Self.scope)\", path: \(second), refreshBeforeExpirySeconds: 120 }\n"
            try original.replacingOccurrences(of: Self.sinkLine(first), with: Self.sinkLine(first) + changed)
                .write(toFile: scenario.broker.configPath, atomically: true, encoding: .utf8)
            try await ConfigurationReloadTests.reload(scenario, expect: "configuration reloaded")
            try await waitUntil("the changed sink to take its file over") {
                try await Self.sinkStatus(scenario).allSatisfy { $0["lastWrite"] != nil }
            }
            #expect(lstat(second, &after) == 0 && after.st_ino == before.st_ino, "not rewritten")

            try original.replacingOccurrences(of: Self.sinkLine(first), with: Self.sinkLine(second))
                .write(toFile: scenario.broker.configPath, atomically: true, encoding: .utf8)
            try await ConfigurationReloadTests.reload(scenario, expect: "configuration reloaded")
            try await waitUntil("the removed sink's file to go") { !FileManager.default.fileExists(atPath: first) }
            #expect(FileManager.default.fileExists(atPath: second), "the kept sink keeps its file")
            let listed = try await Self.sinkPaths(scenario)
            #expect(listed == [second], "status lists only the kept sink: \(listed)")
        }
    }

    static func sinkStatus(_ scenario: Scenario) async throws -> [[String: Any]] {
        let status = try await scenario.broker.request(#"{"op":"status"}"#)
        return ((status["status"] as? [String: Any])?["sinks"] as? [[String: Any]]) ?? []
    }

    static func sinkError(_ scenario: Scenario) async throws -> String? {
        try await sinkStatus(scenario).first.flatMap { ($0["lastError"] as? [String: Any])?["code"] as? String }
    }

    static func sinkPaths(_ scenario: Scenario) async throws -> [String] {
        try await sinkStatus(scenario).compactMap { $0["path"] as? String }
    }

    @Test("onRotate signals the process its pid file names once per new token; a failing command shows as rotate_failed")
    func rotateBySignal() async throws {
        let sinks = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: sinks) }
        #expect(chmod(sinks, 0o755) == 0)
        let counter = try ChildProcess(
            executable: TestEnvironment.python,
            arguments: ["\(TestEnvironment.fixtures)/python/hup_counter.py", "\(sinks)/app.pid", "\(sinks)/hups"],
            logDirectory: sinks, name: "counter")
        defer { counter.signal(SIGKILL) }
        try await waitUntil("the counter's pid file") { FileManager.default.fileExists(atPath: "\(sinks)/app.pid") }
        let yaml = """
            cache: { minRefreshIntervalSeconds: 0 }
            sinks:
              - { scope: "\(Self.scope)", path: \(sinks)/signalled, onRotate: { signal: HUP, pidFile: \(sinks)/app.pid } }
              - { scope: "\(Self.scope)", path: \(sinks)/failing, onRotate: { command: [/bin/sh, -c, "exit 3"] } }
            """
        try await Scenario.run(logLevel: "info", extraYAML: yaml) { scenario in
            let refresh = #"{"op":"token","identity":"default","scope":"\#(Self.scope)","minValiditySeconds":4000}"#
            try await waitUntil("the first token") { FileManager.default.fileExists(atPath: "\(sinks)/signalled") }
            for round in 1...3 {
                let token = try #require(try await scenario.broker.request(refresh).token)
                try await waitUntil("round \(round)'s token") { (try? String(contentsOfFile: "\(sinks)/signalled", encoding: .utf8)) == token }
            }
            try await waitUntil("four SIGHUPs, one per token") {
                (try? String(contentsOfFile: "\(sinks)/hups", encoding: .utf8))?.split(separator: "\n").count == 4
            }
            var error: [String: Any] = [:]
            try await waitUntil("the failing command in status") {
                let failing = try await Self.sinkStatus(scenario).first { $0["path"] as? String == "\(sinks)/failing" }
                error = failing?["lastError"] as? [String: Any] ?? [:]
                return !error.isEmpty
            }
            #expect(error["code"] as? String == "rotate_failed" && (error["message"] as? String ?? "").contains("exited with status 3"), "\(error)")
            #expect(scenario.broker.process.stderr.contains("exited with status 3"), "the exit status is logged")
        }
        await counter.stop()
        #expect((try? String(contentsOfFile: "\(sinks)/hups", encoding: .utf8))?.split(separator: "\n").count == 4, "no signal after the last token")
    }
}
