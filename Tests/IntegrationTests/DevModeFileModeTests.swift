import Foundation
import Testing

/// Dev mode creates its files with explicit modes, whatever umask it was started under.
@Suite("Dev mode file modes")
struct DevModeFileModeTests {
    @Test("under umask 000 nothing dev mode writes is writable by group or others")
    func explicitModes() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = "\(directory)/state"
        // umask is per process: set it for the daemon only, through a shell that execs it.
        let process = try ChildProcess(
            executable: "/bin/sh", arguments: ["-c", "umask 000; exec \"$0\" --dev --state-dir \"$1\"", TestEnvironment.daemonPath, state],
            logDirectory: directory, name: "dev")
        do {
            try await check(state, process)
        } catch {
            await process.stop()
            throw error
        }
        await process.stop()
    }

    private func check(_ state: String, _ process: ChildProcess) async throws {
        try await waitUntil("the dev-mode banner") {
            guard process.isRunning else { throw HarnessError("tokenbrokerd --dev exited: \(process.stderr)") }
            return process.stdout.contains("Stop with Ctrl-C")
        }
        var checked: [String] = []
        let walker = FileManager.default.enumerator(atPath: state)
        while let relative = walker?.nextObject() as? String {
            let path = "\(state)/\(relative)"
            var info = stat()
            guard lstat(path, &info) == 0, info.st_mode & S_IFMT != S_IFLNK else { continue }
            checked.append(relative)
            // The socket's mode is configured (0660: its group connects); everything else is the daemon's own.
            let allowed: mode_t = info.st_mode & S_IFMT == S_IFSOCK ? 0o660 : 0o755
            #expect(info.st_mode & 0o7777 & ~allowed == 0, "\(relative) has mode 0\(String(info.st_mode & 0o7777, radix: 8))")
        }
        #expect(checked.contains("provider/ca.pem") && checked.contains("provider/provider.json"), "\(checked)")
    }
}
