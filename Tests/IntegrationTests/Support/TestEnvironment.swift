import Foundation

/// Where the binaries under test and the Python client live.
enum TestEnvironment {
    /// The package root, found from this file's path.
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// `TOKENBROKER_BIN_DIR` (set by scripts/test), else `.build/debug`.
    static var binDirectory: String {
        ProcessInfo.processInfo.environment["TOKENBROKER_BIN_DIR"] ?? "\(packageRoot)/.build/debug"
    }

    static var daemonPath: String { "\(binDirectory)/tokenbrokerd" }
    static var cliPath: String { "\(binDirectory)/tokenbroker" }

    /// The venv Python with azure-identity (scripts/bootstrap --python makes it).
    static var python: String {
        ProcessInfo.processInfo.environment["TOKENBROKER_PYTHON"] ?? "\(packageRoot)/.venv/bin/python"
    }

    static var fixtures: String { "\(packageRoot)/Tests/IntegrationTests/Fixtures" }

    /// A fresh short directory (Unix socket paths are limited to 107 bytes), inside the
    /// run's own directory when scripts/test made one (`TOKENBROKER_TEST_TMPDIR`), so a
    /// run cleans up only what is its own.
    static func temporaryDirectory() throws -> String {
        let base = ProcessInfo.processInfo.environment["TOKENBROKER_TEST_TMPDIR"] ?? "/tmp"
        var template = Array("\(base)/tbit-XXXXXX".utf8CString)
        guard let result = mkdtemp(&template) else { throw HarnessError("mkdtemp failed") }
        return String(cString: result)
    }
}

/// A failure of the test harness itself (not of the code under test).
struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
