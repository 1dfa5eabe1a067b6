import Foundation
import OffPool

/// A process started by a test, always terminated by `stop()` (SIGTERM, then
/// SIGKILL after a grace period). Its stderr goes to a file the test can read.
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    let stderrPath: String
    let stdoutPath: String

    init(executable: String, arguments: [String], environment: [String: String]? = nil, logDirectory: String, name: String) throws {
        stderrPath = "\(logDirectory)/\(name).stderr"
        stdoutPath = "\(logDirectory)/\(name).stdout"
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = environment ?? ProcessInfo.processInfo.environment
        // The daemon must not pick up the developer's own workload-identity variables.
        for key in ["AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST", "SSL_CERT_FILE"]
        where environment == nil {
            env.removeValue(forKey: key)
        }
        process.environment = env
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        process.standardOutput = FileHandle(forWritingAtPath: stdoutPath)
        try process.run()
    }

    /// False once the process has exited, whether or not Foundation has reaped it yet: its
    /// reaping runs on a dispatch queue, seconds late on a loaded machine, and a test timing
    /// the daemon's exit must not time Foundation's notice of it.
    var isRunning: Bool { process.isRunning && !hasExited(process.processIdentifier) }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }

    func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// Stops the process and waits for it; returns its exit status.
    @discardableResult
    func stop(grace: Duration = .seconds(5)) async -> Int32 {
        if isRunning {
            process.terminate()
            let deadline = ContinuousClock.now + grace
            while isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
            if isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        await exited(process)
        return process.terminationStatus
    }
}

/// Gone, or a zombie nobody has reaped yet (from /proc/PID/stat).
func hasExited(_ pid: pid_t) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let end = stat.range(of: ") ", options: .backwards)
    else { return true }
    return stat[end.upperBound...].hasPrefix("Z") || stat[end.upperBound...].hasPrefix("X")
}

/// Runs a command to completion off the cooperative pool.
func runCommand(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil, stdin: String? = nil
) async throws -> (status: Int32, stdout: String, stderr: String) {
    try await offPool { try runCommandBlocking(executable, arguments, environment: environment, stdin: stdin) }
}

/// Runs a command to completion and returns its status and output.
func runCommandBlocking(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil, stdin: String? = nil
) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let out = Pipe(), err = Pipe(), input = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    // Read both pipes to the end before waiting, so a chatty child cannot block on a full pipe.
    let errData = LockedData()
    let errReader = Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
    errReader.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    while !errData.isSet { usleep(1000) }
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData.value, as: UTF8.self))
}

private final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data: Data?
    func set(_ value: Data) { lock.withLock { data = value } }
    var isSet: Bool { lock.withLock { data != nil } }
    var value: Data { lock.withLock { data ?? Data() } }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
/// The default timeout is patience, not a performance bound: on two cores with the
/// whole suite running in parallel, a dev provider's RSA keys take a while.
func waitUntil(timeout: Duration = .seconds(60), _ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw HarnessError("timed out waiting for \(what)")
}
