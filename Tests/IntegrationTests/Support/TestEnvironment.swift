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
    static var devProviderPath: String { "\(binDirectory)/tokenbroker-dev-provider" }
    static var cliPath: String { "\(binDirectory)/tokenbroker" }

    /// The venv Python with azure-identity (scripts/bootstrap --python makes it).
    static var python: String {
        ProcessInfo.processInfo.environment["TOKENBROKER_PYTHON"] ?? "\(packageRoot)/.venv/bin/python"
    }

    /// The Python of a small venv scripts/bootstrap makes for one pinned old client
    /// (`.venv-azid16`: azure-identity 1.6.1 and msrestazure; `.venv-azid18`: azure-identity
    /// 1.8.0), which cannot share the main venv with the current azure-identity.
    static func oldClientPython(_ venv: String) -> String { "\(packageRoot)/\(venv)/bin/python" }

    /// Whether that venv exists (tests that need it are skipped, saying so, when it does not).
    static func hasOldClient(_ venv: String) -> Bool { FileManager.default.isExecutableFile(atPath: oldClientPython(venv)) }

    /// `executable` run in network namespace `netns` (`ip netns exec`, which execs it: the
    /// child's pid is the program's), or as is.
    static func command(_ executable: String, inNetworkNamespace netns: String?) -> (executable: String, prefix: [String]) {
        guard let netns else { return (executable, []) }
        return ("/usr/sbin/ip", ["netns", "exec", netns, executable])
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
