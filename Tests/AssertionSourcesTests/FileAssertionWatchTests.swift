import AssertionSources
import Foundation
import Glibc
import Logging
import Testing
import TokenExchange

/// The running source follows the file through every way it gets replaced, via inotify.
///
/// The poll interval is an hour, so a pickup within the test deadline can only come from an
/// event (the cached assertion stays valid, so `currentAssertion()` does not re-read on its own).
@Suite struct FileAssertionWatchTests {
    /// Runs `source` for the duration of `body`, then cancels it and waits for `run()` to return.
    private func whileRunning(_ source: FileAssertionSource, _ body: () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await source.run() }
            defer { group.cancelAll() }
            try await body()
        }
    }

    private func subject(of source: FileAssertionSource) async -> String? {
        try? await source.currentAssertion().claims.subject
    }

    private func makeSource(_ path: String, poll: Duration = .seconds(3600)) -> FileAssertionSource {
        FileAssertionSource(path: path, pollInterval: poll, now: { Date() }, logger: quietLogger)
    }

    @Test func followsAtomicWriterSwaps() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let volume = ProjectedVolume(directory: directory.path)
        try volume.publish(["token": makeJWT(subject: "gen-1"), "ca.crt": "x"])
        let source = makeSource(directory.file("token"))

        try await whileRunning(source) {
            #expect(await eventually { await subject(of: source) == "gen-1" })
            try volume.publish(["token": makeJWT(subject: "gen-2"), "ca.crt": "x"])
            #expect(await eventually { await subject(of: source) == "gen-2" })
            try volume.publish(["token": makeJWT(subject: "gen-3"), "ca.crt": "x"])
            #expect(await eventually { await subject(of: source) == "gen-3" })
        }
        // The old timestamped dirs are gone, as kubelet leaves it.
        let entries = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("..2026") }
        #expect(entries.count == 1)
    }

    @Test func followsAPlainRewrite() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("token")
        try Data(makeJWT(subject: "before").utf8).write(to: URL(fileURLWithPath: path))
        let source = makeSource(path)

        try await whileRunning(source) {
            #expect(await eventually { await subject(of: source) == "before" })
            // Truncate and write in place (no rename): IN_CLOSE_WRITE on the file.
            let handle = try #require(FileHandle(forWritingAtPath: path))
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: Data(makeJWT(subject: "after").utf8))
            try handle.close()
            #expect(await eventually { await subject(of: source) == "after" })
        }
    }

    @Test func followsDeleteThenCreate() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("token")
        try Data(makeJWT(subject: "first").utf8).write(to: URL(fileURLWithPath: path))
        let source = makeSource(path)

        try await whileRunning(source) {
            #expect(await eventually { await subject(of: source) == "first" })
            try FileManager.default.removeItem(atPath: path)
            #expect(await eventually { source.snapshot().errorMessage?.contains("file does not exist") == true })
            try Data(makeJWT(subject: "second").utf8).write(to: URL(fileURLWithPath: path))
            #expect(await eventually { await subject(of: source) == "second" })
        }
    }

    @Test func followsARenameOntoTheFile() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("token")
        try Data(makeJWT(subject: "old").utf8).write(to: URL(fileURLWithPath: path))
        let source = makeSource(path)

        try await whileRunning(source) {
            #expect(await eventually { await subject(of: source) == "old" })
            try Data(makeJWT(subject: "renamed").utf8).write(to: URL(fileURLWithPath: directory.file(".token.tmp")))
            #expect(rename(directory.file(".token.tmp"), path) == 0)
            #expect(await eventually { await subject(of: source) == "renamed" })
        }
    }

    @Test func notesAFileGoingBadWhileRunning() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("token")
        try Data(makeJWT(subject: "good").utf8).write(to: URL(fileURLWithPath: path))
        let source = makeSource(path)

        try await whileRunning(source) {
            #expect(await eventually { await subject(of: source) == "good" })
            try Data("garbage".utf8).write(to: URL(fileURLWithPath: path))
            #expect(await eventually { source.snapshot().errorMessage?.contains("not a JWT") == true })
            await #expect(throws: TokenExchangeError.self) { try await source.currentAssertion() }
        }
    }

    @Test func startsWatchingWhenTheDirectoryAppears() async throws {
        let parent = try TemporaryDirectory()
        defer { parent.remove() }
        let directory = parent.file("tokens")
        let source = makeSource("\(directory)/token", poll: .milliseconds(100))

        try await whileRunning(source) {
            #expect(await eventually { source.snapshot().errorMessage?.contains("nor does its directory") == true })
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
            let volume = ProjectedVolume(directory: directory)
            try volume.publish(["token": makeJWT(subject: "mounted")])
            // Picked up by the poll (the directory did not exist to be watched), no restart.
            #expect(await eventually { source.snapshot().claims?.subject == "mounted" })
            try volume.publish(["token": makeJWT(subject: "rotated")])
            #expect(await eventually { source.snapshot().claims?.subject == "rotated" })
        }
    }

    @Test func runReturnsPromptlyWhenCancelled() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let source = makeSource(directory.file("token"))
        let started = ContinuousClock.now
        let task = Task { try await source.run() }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        try await task.value
        // A liveness bound, not a speed target: without the stop signal this would take the hour-long poll.
        #expect(ContinuousClock.now - started < .seconds(120))
    }
}
