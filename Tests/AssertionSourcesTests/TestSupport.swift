import Foundation
import Glibc
import Logging
import Synchronization
import TokenExchange

/// An unsigned JWT (`header.payload.sig`) with the given claims; the source never checks signatures.
func makeJWT(
    subject: String,
    issuer: String = "https://oidc.example.test",
    expiresAt: Date = Date().addingTimeInterval(3600),
    notBefore: Date? = nil
) -> String {
    var claims: [String: Any] = [
        "iss": issuer,
        "sub": subject,
        "aud": ["api://AzureADTokenExchange"],
        "exp": Int(expiresAt.timeIntervalSince1970),
        "iat": Int(Date().timeIntervalSince1970),
    ]
    if let notBefore { claims["nbf"] = Int(notBefore.timeIntervalSince1970) }
    let header = Base64URL.encode(Data(#"{"alg":"RS256","typ":"JWT"}"#.utf8))
    let payload = Base64URL.encode(try! JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]))
    return "\(header).\(payload).c2lnbmF0dXJl"
}

/// A fresh directory under the system temp dir, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        path =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("assertion-sources-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Writes files the way kubelet's AtomicWriter does for a projected volume:
/// `..2026_11_29_01_00_00.123456789/name`, `..data -> ..2026_…`, `name -> ..data/name`.
/// An update writes a new timestamped dir, points `..data_tmp` at it, renames
/// `..data_tmp` over `..data` (IN_MOVED_TO `..data`), then removes the old dir.
struct ProjectedVolume {
    let directory: String
    private static let counter = Atomic<Int>(0)

    /// Publishes `files` (name → content) as the new generation of the volume.
    func publish(_ files: [String: String]) throws {
        let generation = Self.counter.add(1, ordering: .relaxed).newValue
        let timestamped = String(format: "..2026_11_29_01_00_%02d.%09d", generation % 60, generation)
        let timestampedPath = "\(directory)/\(timestamped)"
        try FileManager.default.createDirectory(atPath: timestampedPath, withIntermediateDirectories: true)
        for (name, content) in files {
            try Data(content.utf8).write(to: URL(fileURLWithPath: "\(timestampedPath)/\(name)"))
        }
        let previous = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/..data")

        let temporaryLink = "\(directory)/..data_tmp"
        try check(symlink(timestamped, temporaryLink), "symlink ..data_tmp")
        try check(rename(temporaryLink, "\(directory)/..data"), "rename ..data_tmp -> ..data")

        for name in files.keys where (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\(name)")) == nil {
            try check(symlink("..data/\(name)", "\(directory)/\(name)"), "symlink \(name)")
        }
        if let previous, previous != timestamped {
            try FileManager.default.removeItem(atPath: "\(directory)/\(previous)")
        }
    }

    private func check(_ result: Int32, _ what: String) throws {
        guard result == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO, what) }
    }
}

struct POSIXError: Error, CustomStringConvertible {
    let code: POSIXErrorCode
    let what: String
    init(_ code: POSIXErrorCode, _ what: String) { self.code = code; self.what = what }
    var description: String { "\(what): \(code)" }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; true when it held.
/// Asserts that a pickup happened, not how fast.
func eventually(timeout: Duration = .seconds(30), _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return await condition()
}

/// A log handler that keeps every record, for asserting what was (and was not) logged.
final class RecordingLogHandler: LogHandler, Sendable {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: String
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

    func log(event: LogEvent) {
        let record = Record(level: event.level, message: "\(event.message)", metadata: "\(event.metadata ?? [:])")
        storage.withLock { $0.append(record) }
    }

    var logger: Logger { Logger(label: "test") { _ in self } }
}

/// A logger that discards everything, so test output stays readable.
let quietLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
