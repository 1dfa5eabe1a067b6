import AssertionSources
import Foundation
import Glibc
import Logging
import Testing
import TokenExchange

/// Reading a token file once: layouts, and the exact reason a file cannot be used.
@Suite struct FileAssertionSourceReadingTests {
    private func source(_ path: String, logger: Logger = quietLogger, now: @escaping @Sendable () -> Date = { Date() }) -> FileAssertionSource {
        FileAssertionSource(path: path, pollInterval: .seconds(60), now: now, logger: logger)
    }

    private func unavailableReason(_ source: FileAssertionSource) async -> TokenExchangeError? {
        do {
            _ = try await source.currentAssertion()
            return nil
        } catch {
            return error
        }
    }

    @Test func readsAKubeletProjectedVolume() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try ProjectedVolume(directory: directory.path).publish(["token": makeJWT(subject: "system:serviceaccount:ns:first")])

        let assertion = try await source(directory.file("token")).currentAssertion()
        #expect(assertion.claims.subject == "system:serviceaccount:ns:first")
        #expect(assertion.origin == directory.file("token"))
    }

    @Test func trimsWhitespaceAroundTheToken() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let jwt = makeJWT(subject: "padded")
        try Data("  \n\(jwt)\r\n\n".utf8).write(to: URL(fileURLWithPath: directory.file("token")))

        let assertion = try await source(directory.file("token")).currentAssertion()
        #expect(assertion.jwt == jwt)
    }

    @Test(arguments: [
        ("", "file is empty"),
        (" \n\t\n", "file is empty"),
        ("not-a-token", "not a JWT: expected 3 dot-separated parts"),
        ("a.%%%.c", "not a JWT: the payload is not base64url"),
    ])
    func explainsAnUnusableFile(content: String, reason: String) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try Data(content.utf8).write(to: URL(fileURLWithPath: directory.file("token")))

        let error = try #require(await unavailableReason(source(directory.file("token"))))
        #expect(error.code == .assertionUnavailable)
        #expect(error.message.contains(directory.file("token")))
        #expect(error.message.contains(reason), "\(error.message)")
    }

    @Test func explainsAMissingFileAndDirectory() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }

        let missingFile = try #require(await unavailableReason(source(directory.file("token"))))
        #expect(missingFile.code == .assertionUnavailable)
        #expect(missingFile.message.hasSuffix("file does not exist"))

        let missingDirectory = try #require(await unavailableReason(source(directory.file("nope/token"))))
        #expect(missingDirectory.message.contains("nor does its directory \(directory.file("nope"))"))
    }

    @Test func refusesAnOversizedFile() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try Data(repeating: UInt8(ascii: "a"), count: 64 * 1024 + 1).write(to: URL(fileURLWithPath: directory.file("token")))

        let error = try #require(await unavailableReason(source(directory.file("token"))))
        #expect(error.message.contains("file is larger than 64 KiB"))
    }

    @Test func refusesADirectory() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let error = try #require(await unavailableReason(source(directory.path)))
        #expect(error.message.contains("is a directory"))
    }

    // root reads any file regardless of its mode, so this only means something unprivileged.
    @Test(.enabled(if: getuid() != 0, "root ignores file permissions"))
    func explainsPermissionDenied() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try Data(makeJWT(subject: "x").utf8).write(to: URL(fileURLWithPath: directory.file("token")))
        chmod(directory.file("token"), 0)

        let error = try #require(await unavailableReason(source(directory.file("token"))))
        #expect(error.message.contains("permission denied"))
    }

    @Test func refusesAnExpiredAssertionNamingTheFileAndExp() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let exp = Date(timeIntervalSince1970: 1_764_378_000)
        try Data(makeJWT(subject: "old", expiresAt: exp).utf8).write(to: URL(fileURLWithPath: directory.file("token")))

        let error = try #require(await unavailableReason(source(directory.file("token"), now: { exp.addingTimeInterval(120) })))
        #expect(error.code == .assertionExpired)
        #expect(error.message.contains(directory.file("token")))
        #expect(error.message.contains("exp=1764378000"))
        #expect(error.message.contains("120 s ago"))
    }

    @Test func refusesANotYetValidAssertion() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let nbf = Date().addingTimeInterval(3600)
        try Data(makeJWT(subject: "future", expiresAt: nbf.addingTimeInterval(3600), notBefore: nbf).utf8)
            .write(to: URL(fileURLWithPath: directory.file("token")))

        let error = try #require(await unavailableReason(source(directory.file("token"))))
        #expect(error.code == .assertionExpired)
        #expect(error.message.contains("nbf=\(Int(nbf.timeIntervalSince1970))"))
    }

    @Test func recoversWhenAMissingFileAppearsWithoutRunning() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let source = source(directory.file("token"))
        #expect(await unavailableReason(source)?.code == .assertionUnavailable)

        try Data(makeJWT(subject: "late").utf8).write(to: URL(fileURLWithPath: directory.file("token")))
        #expect(try await source.currentAssertion().claims.subject == "late")
    }

    @Test func rereadsAStaleReadWithoutRunning() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("token")
        try Data(makeJWT(subject: "one").utf8).write(to: URL(fileURLWithPath: path))
        let source = FileAssertionSource(path: path, pollInterval: .milliseconds(50), now: { Date() }, logger: quietLogger)
        #expect(try await source.currentAssertion().claims.subject == "one")

        try Data(makeJWT(subject: "two").utf8).write(to: URL(fileURLWithPath: path))
        try await Task.sleep(for: .milliseconds(100))
        #expect(try await source.currentAssertion().claims.subject == "two")
    }

    @Test func snapshotShowsClaimsOrTheReason() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let source = source(directory.file("token"))
        #expect(source.snapshot() == AssertionSnapshot(origin: directory.file("token")))

        _ = await unavailableReason(source)
        var snapshot = source.snapshot()
        #expect(snapshot.errorCode == "assertion_unavailable")
        #expect(snapshot.errorMessage?.contains("file does not exist") == true)
        #expect(snapshot.claims == nil)

        try Data(makeJWT(subject: "snap").utf8).write(to: URL(fileURLWithPath: directory.file("token")))
        _ = try await source.currentAssertion()
        snapshot = source.snapshot()
        #expect(snapshot.claims?.subject == "snap")
        #expect(snapshot.loadedAt != nil)
        #expect(snapshot.errorMessage == nil)
    }

    @Test func logsClaimsOncePerChangeAndNeverTheToken() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let recorder = RecordingLogHandler()
        let source = source(directory.file("token"), logger: recorder.logger)

        _ = await unavailableReason(source)
        _ = await unavailableReason(source)  // same failure: no second warning
        let jwt = makeJWT(subject: "logged")
        try Data(jwt.utf8).write(to: URL(fileURLWithPath: directory.file("token")))
        _ = try await source.currentAssertion()
        _ = try await source.currentAssertion()  // cached: no second info line

        let records = recorder.records
        #expect(records.filter { $0.level == .warning }.count == 1)
        let infos = records.filter { $0.level == .info }
        #expect(infos.count == 1)
        #expect(infos.first?.metadata.contains("logged") == true)
        for record in records {
            #expect(!record.message.contains(jwt) && !record.metadata.contains(jwt))
            #expect(!record.metadata.contains(jwt.split(separator: ".")[1]))
        }
    }
}
