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

    /// `fs.inotify.max_user_instances` is 128 per user for the whole machine: an instance per
    /// watched file used them up (and the watchers fell back to a minute-long poll).
    @Test func manyWatchedFilesShareOneInotifyInstance() async throws {
        let directories = try (0..<40).map { _ in try TemporaryDirectory() }
        defer { directories.forEach { $0.remove() } }
        let sources = try directories.enumerated().map { index, directory in
            try Data(makeJWT(subject: "file-\(index)").utf8).write(to: URL(fileURLWithPath: directory.file("token")))
            return makeSource(directory.file("token"))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for source in sources { group.addTask { try await source.run() } }
            defer { group.cancelAll() }
            for (index, source) in sources.enumerated() {
                #expect(await eventually { await subject(of: source) == "file-\(index)" })
            }
            // Every one is watched: a rewrite of each is picked up through an event.
            for (index, directory) in directories.enumerated() {
                try Data(makeJWT(subject: "rewritten-\(index)").utf8).write(to: URL(fileURLWithPath: directory.file("token")))
            }
            for (index, source) in sources.enumerated() {
                #expect(await eventually { await subject(of: source) == "rewritten-\(index)" })
            }
            // Other tests in this process may hold a few instances of their own (the pods
            // watcher's); one per source would be 40 more.
            let instances = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count { entry in
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(entry)")) == "anon_inode:inotify"
            }
            #expect(instances < 10, "\(instances) inotify instances with 40 watched files")
        }
    }

    /// Two files of one directory share the kernel's watch: the first source to stop must not
    /// take the other's events with it.
    @Test func aSourceStoppingLeavesTheOtherOfItsDirectoryWatched() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try Data(makeJWT(subject: "a-1").utf8).write(to: URL(fileURLWithPath: directory.file("a")))
        try Data(makeJWT(subject: "b-1").utf8).write(to: URL(fileURLWithPath: directory.file("b")))
        let (a, b) = (makeSource(directory.file("a")), makeSource(directory.file("b")))
        try await whileRunning(b) {
            try await whileRunning(a) {
                #expect(await eventually { await subject(of: a) == "a-1" })
                #expect(await eventually { await subject(of: b) == "b-1" })
            }
            try Data(makeJWT(subject: "b-2").utf8).write(to: URL(fileURLWithPath: directory.file("b")))
            #expect(await eventually { await subject(of: b) == "b-2" })
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
