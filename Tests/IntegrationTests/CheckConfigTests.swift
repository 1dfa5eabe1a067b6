import Foundation
import Testing

/// `tokenbrokerd check-config` catches what start-up would then fail on, and neither
/// it nor start-up blocks on a FIFO at the configuration path.
@Suite("check-config and start-up refuse what cannot work")
struct CheckConfigTests {
    /// Runs the daemon with `arguments`; stops it (and says so) if it is still running after
    /// `seconds`. The deadline is patience, not a speed bound (a process blocked on a FIFO
    /// never returns): in a fresh clone's CI, with the whole suite starting at once on two
    /// cores, the refusal was seen only after 15 s, while alone it takes milliseconds.
    static func run(
        _ arguments: [String], in directory: String, name: String, seconds: Int = 60
    ) async throws -> (status: Int32, stderr: String, timedOut: Bool) {
        let process = try ChildProcess(executable: TestEnvironment.daemonPath, arguments: arguments, logDirectory: directory, name: name)
        let deadline = ContinuousClock.now + .seconds(seconds)
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let timedOut = process.isRunning
        let status = await process.stop(grace: .seconds(1))
        return (status, process.stderr, timedOut)
    }

    static let identity = "identities:\n  - name: x\n    source: { file: /var/run/token }\n    exchange: { entra: { tenantId: t, clientId: c } }\n"

    @Test(
        "exit 78 naming the problem",
        arguments: [
            ("directory", "is a directory"),
            ("fifo", "is a FIFO"),
            ("userinfo", "identities[0].exchange.entra.authorityHost"),
            ("missing-ca", "upstream.caFile"),
            ("garbage-ca", "upstream.caFile"),
            ("long-socket", "socket.path"),
            ("bad-header", "compat.identityHeaderFile"),
        ])
    func refused(_ case: String, _ expected: String) async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = "\(directory)/config.yaml"
        var yaml = Self.identity
        switch `case` {
        case "directory": config = directory
        case "fifo": #expect(mkfifo(config, 0o600) == 0)
        case "userinfo":
            yaml = yaml.replacingOccurrences(of: "clientId: c", with: "clientId: c, authorityHost: \"https://me:pw@login.microsoftonline.com\"")
        case "missing-ca": yaml += "upstream: { caFile: \(directory)/none.pem }\n"
        case "garbage-ca":
            try "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".write(
                toFile: "\(directory)/ca.pem", atomically: true, encoding: .utf8)
            yaml += "upstream: { caFile: \(directory)/ca.pem }\n"
        case "bad-header":
            try "too short\n".write(toFile: "\(directory)/header", atomically: true, encoding: .utf8)
            yaml += "compat: { tcp: \"127.0.0.1:0\", identityHeaderFile: \(directory)/header }\n"
        default: yaml += "socket: { path: \(directory)/\(String(repeating: "s", count: 100)).sock }\n"
        }
        if `case` != "fifo", `case` != "directory" { try yaml.write(toFile: config, atomically: true, encoding: .utf8) }
        let result = try await Self.run(["check-config", "--config", config], in: directory, name: "check")
        #expect(!result.timedOut, "check-config returned")
        #expect(result.status == 78, "\(result.stderr)")
        #expect(result.stderr.contains(expected), "\(result.stderr)")
    }

    @Test("start-up with a FIFO at the configuration path exits 78 at once instead of hanging")
    func startUpOnFIFO() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(mkfifo("\(directory)/config.yaml", 0o600) == 0)
        let result = try await Self.run(["--config", "\(directory)/config.yaml", "--socket", "\(directory)/b.sock"], in: directory, name: "daemon")
        #expect(!result.timedOut)
        #expect(result.status == 78, "\(result.stderr)")
        #expect(result.stderr.contains("is a FIFO"), "\(result.stderr)")
    }
}
