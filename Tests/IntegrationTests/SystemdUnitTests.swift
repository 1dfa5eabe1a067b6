import Foundation
import Testing

/// The units in `systemd/`, `scripts/install`, and socket activation of the real
/// daemon — checked only with tools that need no running systemd manager
/// (`systemd-analyze verify`, `systemd-analyze security --offline=true`,
/// `systemd-socket-activate`). A systemd manager must never be started on the
/// test machines: it would move the machine's processes between cgroups.
@Suite("systemd units, install script, socket activation", .serialized)
struct SystemdUnitTests {
    static var unitDirectory: String { "\(TestEnvironment.packageRoot)/systemd" }
    static let maximumExposure = 1.5

    // MARK: (a) systemd-analyze verify

    @Test("systemd-analyze verify reports nothing for tokenbroker.service and both socket units")
    func verifyIsClean() async throws {
        let analyze = try Self.tool("systemd-analyze")
        let daemon = try Self.daemonBinary()
        try await Self.withTemporaryDirectory { directory in
            // verify insists that ExecStart= exists; /usr/bin/tokenbrokerd is not installed
            // on a build machine, so check a copy that differs only in that path.
            let service = try String(contentsOfFile: "\(Self.unitDirectory)/tokenbroker.service", encoding: .utf8)
            let execStart = "ExecStart=/usr/bin/tokenbrokerd "
            try #require(service.contains(execStart), "tokenbroker.service must start /usr/bin/tokenbrokerd")
            try service.replacingOccurrences(of: execStart, with: "ExecStart=\(daemon) ")
                .write(toFile: "\(directory)/tokenbroker.service", atomically: true, encoding: .utf8)
            for socket in ["tokenbroker.socket", "tokenbroker-compat.socket"] {
                try FileManager.default.copyItem(atPath: "\(Self.unitDirectory)/\(socket)", toPath: "\(directory)/\(socket)")
            }

            let result = try await runCommand(
                analyze, ["verify", "\(directory)/tokenbroker.service", "\(directory)/tokenbroker.socket", "\(directory)/tokenbroker-compat.socket"])
            #expect(result.status == 0, "systemd-analyze verify exited \(result.status): \(result.stderr)")
            #expect(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "systemd-analyze verify warned:\n\(result.stderr)")
            #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "systemd-analyze verify printed:\n\(result.stdout)")
        }
    }

    @Test("the units say what the daemon relies on: notify, watchdog, fd name, socket mode and group")
    func unitsCarryTheContract() throws {
        let service = try Self.settings(of: "tokenbroker.service")
        #expect(service["Type"] == ["notify"])
        #expect(service["NotifyAccess"] == ["main"])
        #expect(service["WatchdogSec"] == ["30s"])
        #expect(service["ExecReload"] == ["/bin/kill -HUP $MAINPID"])
        #expect(service["User"] == ["tokenbroker"])
        #expect(service["Requires"] == ["tokenbroker.socket"])
        #expect(service["ProtectProc"] != ["invisible"], "callers' /proc/PID/status must stay readable for group rules")
        #expect(service["PrivateUsers"] == nil, "SO_PEERCRED would report every caller as nobody")
        #expect(service["RuntimeDirectory"] == nil, "/run/tokenbroker belongs to the socket unit")
        #expect(service["FileDescriptorStoreMax"] == ["1"], "the token cache's memfd is kept across restarts")
        let socket = try Self.settings(of: "tokenbroker.socket")
        #expect(socket["ListenStream"] == ["/run/tokenbroker/broker.sock"])
        #expect(socket["FileDescriptorName"] == ["broker"])
        #expect(socket["SocketMode"] == ["0660"])
        #expect(socket["SocketGroup"] == ["tokenbroker"])
        #expect(socket["Accept"] == ["no"])
        let sysusers = try String(contentsOfFile: "\(Self.unitDirectory)/sysusers.d/tokenbroker.conf", encoding: .utf8)
        #expect(
            sysusers.split(separator: "\n").contains {
                $0.hasPrefix("u") && $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first == "tokenbroker"
            })
    }

    @Test("RestrictAddressFamilies= lets the daemon open every address family its code opens (netlink for TCP callers' uids)")
    func addressFamiliesCoverTheDaemon() throws {
        let allowed = Set(
            (try Self.settings(of: "tokenbroker.service")["RestrictAddressFamilies"] ?? []).flatMap { $0.split(separator: " ").map(String.init) })
        // Every `socket(AF_…` in the daemon's sources (the CLI and relay run elsewhere).
        var opened: Set<String> = []
        let sources = "\(TestEnvironment.packageRoot)/Sources"
        let walker = FileManager.default.enumerator(atPath: sources)
        while let relative = walker?.nextObject() as? String {
            guard !relative.hasPrefix("tokenbroker/"), relative.hasSuffix(".swift") || relative.hasSuffix(".h") else { continue }
            let text = try String(contentsOfFile: "\(sources)/\(relative)", encoding: .utf8)
            for piece in text.components(separatedBy: "socket(").dropFirst() {
                let family = piece.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
                if family.hasPrefix("AF_") { opened.insert(String(family)) }
            }
        }
        #expect(opened.contains("AF_NETLINK"), "the scan found \(opened)")
        #expect(opened.subtracting(allowed).isEmpty, "the unit forbids \(opened.subtracting(allowed).sorted()), which the daemon opens")
    }

    // MARK: (b) systemd-analyze security

    @Test("systemd-analyze security --offline=true rates tokenbroker.service at 1.5 or less")
    func exposureIsLow() async throws {
        let analyze = try Self.tool("systemd-analyze")
        let result = try await runCommand(analyze, ["security", "--offline=true", "--no-pager", "\(Self.unitDirectory)/tokenbroker.service"])
        let output = result.stdout + result.stderr
        let line = try #require(
            output.split(separator: "\n").first { $0.contains("Overall exposure level for tokenbroker.service:") },
            "no 'Overall exposure level' line in systemd-analyze security output (exit \(result.status)):\n\(output)")
        let figure = try #require(
            line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) },
            "cannot read the exposure figure in: \(line)")
        #expect(figure <= Self.maximumExposure, "exposure \(figure) > \(Self.maximumExposure):\n\(output)")
    }

    // MARK: (c) scripts/install

    @Test("scripts/install stages binaries, units, sysusers/tmpfiles, docs and config into DESTDIR")
    func installIntoDestdir() async throws {
        _ = try Self.daemonBinary()
        try await Self.withTemporaryDirectory { destdir in
            let first = try await Self.install(destdir: destdir)
            try #require(first.status == 0, "scripts/install failed (\(first.status)):\n\(first.stdout)\n\(first.stderr)")

            let expected: [(path: String, mode: Int)] = [
                ("usr/bin/tokenbrokerd", 0o755), ("usr/bin/tokenbroker", 0o755),
                ("usr/lib/systemd/system/tokenbroker.service", 0o644), ("usr/lib/systemd/system/tokenbroker.socket", 0o644),
                ("usr/lib/sysusers.d/tokenbroker.conf", 0o644), ("usr/lib/tmpfiles.d/tokenbroker.conf", 0o644),
                ("usr/share/doc/tokenbroker/config.yaml.example", 0o644),
                ("etc/tokenbroker/config.yaml", 0o640),
            ]
            for file in expected {
                let path = "\(destdir)/\(file.path)"
                let attributes = try #require(try? FileManager.default.attributesOfItem(atPath: path), "scripts/install did not create \(file.path)")
                #expect(
                    (attributes[.posixPermissions] as? Int) == file.mode,
                    "\(file.path): mode \(String((attributes[.posixPermissions] as? Int) ?? 0, radix: 8))")
                #expect(first.stdout.contains(path), "scripts/install did not report \(path)")
            }
            #expect(Self.mode(of: "\(destdir)/etc/tokenbroker") == 0o750)
            // With PREFIX=/usr the units are installed unchanged.
            for unit in ["tokenbroker.service", "tokenbroker.socket"] {
                #expect(
                    FileManager.default.contentsEqual(atPath: "\(Self.unitDirectory)/\(unit)", andPath: "\(destdir)/usr/lib/systemd/system/\(unit)"),
                    "\(unit) was modified by the install")
            }
            #expect(
                FileManager.default.contentsEqual(
                    atPath: "\(Self.unitDirectory)/config.yaml.example", andPath: "\(destdir)/etc/tokenbroker/config.yaml"))
            #expect(FileManager.default.contentsEqual(atPath: TestEnvironment.daemonPath, andPath: "\(destdir)/usr/bin/tokenbrokerd"))
            #expect(first.stdout.contains("nothing was started"))

            // The installed daemon accepts the installed configuration.
            let check = try await runCommand(
                "\(destdir)/usr/bin/tokenbrokerd", ["check-config", "--config", "\(destdir)/etc/tokenbroker/config.yaml"])
            #expect(check.status == 0, "installed config.yaml is invalid: \(check.stdout)\(check.stderr)")

            // A second install keeps an edited configuration.
            let edited = "# edited by the operator\nsocket: { path: /run/tokenbroker/broker.sock }\n"
            try edited.write(toFile: "\(destdir)/etc/tokenbroker/config.yaml", atomically: false, encoding: .utf8)
            let second = try await Self.install(destdir: destdir)
            #expect(second.status == 0, "second scripts/install failed: \(second.stderr)")
            #expect(
                try String(contentsOfFile: "\(destdir)/etc/tokenbroker/config.yaml", encoding: .utf8) == edited,
                "an existing config.yaml was overwritten")
            #expect(second.stdout.contains("kept \(destdir)/etc/tokenbroker/config.yaml"))
        }
    }

    @Test("scripts/install with PREFIX=/usr/local points ExecStart= at the installed binary")
    func installWithPrefix() async throws {
        _ = try Self.daemonBinary()
        try await Self.withTemporaryDirectory { destdir in
            let result = try await Self.install(destdir: destdir, extra: ["--prefix", "/usr/local"])
            try #require(result.status == 0, "scripts/install failed (\(result.status)):\n\(result.stderr)")
            #expect(FileManager.default.isExecutableFile(atPath: "\(destdir)/usr/local/bin/tokenbrokerd"))
            let service = try String(contentsOfFile: "\(destdir)/usr/local/lib/systemd/system/tokenbroker.service", encoding: .utf8)
            #expect(service.contains("ExecStart=/usr/local/bin/tokenbrokerd --config /etc/tokenbroker/config.yaml"))
            #expect(!service.contains("/usr/bin/tokenbrokerd"))
        }
    }

    @Test("sysusers.d creates user and group tokenbroker and tmpfiles.d makes /etc/tokenbroker root:tokenbroker 0750 (in a scratch root)")
    func sysusersAndTmpfiles() async throws {
        let sysusers = try Self.tool("systemd-sysusers")
        let tmpfiles = try Self.tool("systemd-tmpfiles")
        try await Self.withTemporaryDirectory { root in
            // --root confines both tools to the scratch tree; the host's users and /etc stay untouched.
            for (directory, file) in [("usr/lib/sysusers.d", "sysusers.d"), ("usr/lib/tmpfiles.d", "tmpfiles.d")] {
                try FileManager.default.createDirectory(atPath: "\(root)/\(directory)", withIntermediateDirectories: true)
                try FileManager.default.copyItem(
                    atPath: "\(Self.unitDirectory)/\(file)/tokenbroker.conf", toPath: "\(root)/\(directory)/tokenbroker.conf")
            }
            try FileManager.default.createDirectory(atPath: "\(root)/etc", withIntermediateDirectories: true)
            let users = try await runCommand(sysusers, ["--root=\(root)", "tokenbroker.conf"])
            try #require(users.status == 0, "systemd-sysusers failed: \(users.stderr)")
            let passwd = try String(contentsOfFile: "\(root)/etc/passwd", encoding: .utf8)
            let group = try String(contentsOfFile: "\(root)/etc/group", encoding: .utf8)
            let entry = try #require(passwd.split(separator: "\n").first { $0.hasPrefix("tokenbroker:") }, "no tokenbroker user in \(passwd)")
            let fields = entry.split(separator: ":", omittingEmptySubsequences: false)
            #expect(fields.count == 7 && fields[6] == "/usr/sbin/nologin")
            let gid = try #require(
                group.split(separator: "\n").first { $0.hasPrefix("tokenbroker:") }?.split(separator: ":", omittingEmptySubsequences: false)[2])
            #expect(Int(gid).map { $0 > 0 && $0 < 1000 } == true, "not a system group: gid \(gid)")

            let files = try await runCommand(tmpfiles, ["--root=\(root)", "--create", "tokenbroker.conf"])
            #expect(files.status == 0, "systemd-tmpfiles failed: \(files.stderr)")
            var info = stat()
            try #require(lstat("\(root)/etc/tokenbroker", &info) == 0, "tmpfiles did not create /etc/tokenbroker")
            #expect(info.st_mode & 0o7777 == 0o750)
            #expect(info.st_uid == 0)
            #expect(String(info.st_gid) == String(gid))
        }
    }

    // MARK: (d) socket activation

    @Test("systemd-socket-activate starts tokenbrokerd on the first connection, which is answered; the socket survives the daemon")
    func socketActivation() async throws {
        let activate = try Self.tool("systemd-socket-activate")
        let daemon = try Self.daemonBinary()
        try await Self.withTemporaryDirectory { directory in
            let socketPath = "\(directory)/broker.sock"
            let configuredPath = "\(directory)/configured.sock"
            let configPath = "\(directory)/config.yaml"
            // Zero identities is a valid configuration; its socket path must stay unused.
            try "socket: { path: \(configuredPath) }\nlog: { level: debug }\n".write(toFile: configPath, atomically: true, encoding: .utf8)

            // Not Foundation's Process: systemd-socket-activate closes every inherited fd,
            // including the socket Foundation watches for the child's exit, and
            // Foundation's process monitor then blocks in waitpid() on it, so no other
            // child of the test process is ever reaped. SpawnedProcess also gives the
            // child an empty signal mask (test threads block SIGTERM; the mask survives exec).
            let process = try SpawnedProcess(
                executable: activate, arguments: ["-l", socketPath, "--fdname=broker", daemon, "--config", configPath],
                directory: directory, name: "activate")
            do {
                try await waitUntil(timeout: .seconds(10), "systemd-socket-activate to listen") {
                    guard process.isRunning else { throw HarnessError("systemd-socket-activate exited: \(process.stderr)") }
                    return process.stderr.contains("Listening on") && Self.isSocket(socketPath)
                }
                // Nothing has connected yet: the daemon must not be running.
                try await Task.sleep(for: .milliseconds(200))
                #expect(!process.stderr.contains("Execing"), "the daemon started before any connection:\n\(process.stderr)")

                let connection = try UnixSocketConnection(path: socketPath)
                try connection.send(#"{"op":"ping","id":7}"# + "\n")
                let answer = try connection.readJSONLine()
                #expect(answer.ok, "first request not answered ok: \(answer)")
                #expect(answer["id"] as? Int == 7)

                #expect(process.stderr.contains("Execing"), "systemd-socket-activate did not start the daemon:\n\(process.stderr)")
                // The answer can overtake the log line on its way through the stderr pipe.
                try await waitUntil(timeout: .seconds(10), "the daemon to log that it adopted fd 3 (serving inherited socket)") {
                    process.stderr.contains("serving inherited socket")
                }
                #expect(
                    !FileManager.default.fileExists(atPath: configuredPath), "the daemon bound its configured path although it inherited a socket")

                // Later connections go to the same process.
                let second = try UnixSocketConnection(path: socketPath)
                try second.send(#"{"op":"ping","id":8}"# + "\n")
                #expect(try second.readJSONLine()["id"] as? Int == 8)

                // The socket is served before the daemon traps SIGTERM (its ServiceGroup
                // starts after adopting fd 3): wait for "ready" so SIGTERM is a graceful stop.
                try await waitUntil(timeout: .seconds(10), "tokenbrokerd to report ready") {
                    guard process.isRunning else { throw HarnessError("tokenbrokerd exited: \(process.stderr)") }
                    return process.stderr.contains("] ready")
                }
                // SIGTERM: graceful stop; the inherited socket is not the daemon's to unlink.
                let status = await process.stop(grace: .seconds(10))
                #expect(status == 0, "tokenbrokerd exited \(status) after SIGTERM:\n\(process.stderr)")
                #expect(process.stderr.contains("STOPPING") || process.stderr.contains("stopping"), "no graceful stop logged:\n\(process.stderr)")
                #expect(Self.isSocket(socketPath), "the daemon unlinked the socket it inherited")
            } catch {
                await process.stop()
                throw error
            }
            await process.stop()
        }
    }

    @Test("an inherited socket named compat serves the compatibility endpoints; the configured listener is not opened")
    func compatSocketActivation() async throws {
        let activate = try Self.tool("systemd-socket-activate")
        let daemon = try Self.daemonBinary()
        try await Self.withTemporaryDirectory { directory in
            let brokerSocket = "\(directory)/broker.sock"
            let compatSocket = "\(directory)/compat.sock"
            let configPath = "\(directory)/config.yaml"
            try """
            socket: { path: \(directory)/configured.sock }
            compat: { unix: \(directory)/configured-compat.sock, identityHeaderFile: \(directory)/identity-header }
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
            let process = try SpawnedProcess(
                executable: activate, arguments: ["-l", brokerSocket, "-l", compatSocket, "--fdname=broker:compat", daemon, "--config", configPath],
                directory: directory, name: "activate")
            do {
                try await waitUntil(timeout: .seconds(10), "systemd-socket-activate to listen") {
                    guard process.isRunning else { throw HarnessError("systemd-socket-activate exited: \(process.stderr)") }
                    return Self.isSocket(brokerSocket) && Self.isSocket(compatSocket)
                }
                // The first connection, to the main socket, starts the daemon with both fds.
                let connection = try UnixSocketConnection(path: brokerSocket)
                try connection.send(#"{"op":"ping","id":1}"# + "\n")
                #expect(try connection.readJSONLine().ok)
                let imds = try await runCommand(
                    "/usr/bin/curl",
                    [
                        "-s", "--unix-socket", compatSocket,
                        "http://localhost/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://x",
                    ])
                #expect(imds.stdout.contains("Required metadata header not specified"), "\(imds.stdout) \(process.stderr)")
                #expect(!FileManager.default.fileExists(atPath: "\(directory)/configured-compat.sock"))
            } catch {
                await process.stop()
                throw error
            }
            await process.stop()
        }
    }

    // MARK: Helpers

    /// The absolute path of `name`, or a failure saying which Debian package provides it.
    static func tool(_ name: String) throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":").map(String.init) + ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw HarnessError("\(name) not found (PATH=\(path)); it is part of the Debian package 'systemd': apt-get install systemd")
    }

    /// The built daemon, or a failure saying how to build it.
    static func daemonBinary() throws -> String {
        let path = TestEnvironment.daemonPath
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw HarnessError("\(path) does not exist: run `swift build --product tokenbrokerd` (or set TOKENBROKER_BIN_DIR)")
        }
        return path
    }

    /// Runs scripts/install with the binaries under test (never builds).
    static func install(destdir: String, extra: [String] = []) async throws -> (status: Int32, stdout: String, stderr: String) {
        var environment = ProcessInfo.processInfo.environment
        environment["TOKENBROKER_BIN_DIR"] = TestEnvironment.binDirectory
        for key in ["DESTDIR", "PREFIX", "UNITDIR", "SYSUSERSDIR", "TMPFILESDIR", "DOCDIR", "SYSCONFDIR"] { environment.removeValue(forKey: key) }
        return try await runCommand(
            "/bin/bash",
            [
                "\(TestEnvironment.packageRoot)/scripts/install", "--debug", "--no-build", "--bin-dir", TestEnvironment.binDirectory, "--destdir",
                destdir,
            ] + extra,
            environment: environment)
    }

    /// `Key=Value` lines of a unit, every value per key, comments skipped.
    static func settings(of unit: String) throws -> [String: [String]] {
        let text = try String(contentsOfFile: "\(unitDirectory)/\(unit)", encoding: .utf8)
        var result: [String: [String]] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.hasPrefix("[") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            result[String(line[..<equals]), default: []].append(String(line[line.index(after: equals)...]))
        }
        return result
    }

    static func isSocket(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK
    }

    static func mode(of path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int
    }

    /// A fresh temporary directory, removed afterwards whatever `body` does.
    static func withTemporaryDirectory(_ body: (String) async throws -> Void) async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await body(directory)
    }
}

/// A child started with `posix_spawn` (clean signal mask and dispositions, stdin
/// from /dev/null, stdout/stderr to files) and reaped with `waitpid` by pid, so it
/// never touches Foundation's process monitor. Stop it with `stop()`.
final class SpawnedProcess: @unchecked Sendable {
    let pid: pid_t
    let stderrPath: String
    private let lock = NSLock()
    private var exitStatus: Int32?

    init(executable: String, arguments: [String], directory: String, name: String) throws {
        stderrPath = "\(directory)/\(name).stderr"
        let stdoutPath = "\(directory)/\(name).stdout"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        // The daemon must not pick up the developer's workload identity or a service manager's variables.
        let dropped = [
            "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST", "SSL_CERT_FILE",
            "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM",
        ]
        let environment = ProcessInfo.processInfo.environment.filter { !dropped.contains($0.key) }.map { "\($0.key)=\($0.value)" }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else { throw HarnessError("posix_spawn(\(executable)) failed: \(String(cString: strerror(result)))") }
        self.pid = pid
    }

    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Reaps the child if it has exited; returns its status (128+N when killed by signal N).
    private func reap(blocking: Bool) -> Int32? {
        lock.withLock {
            if let exitStatus { return exitStatus }
            var status: Int32 = 0
            guard waitpid(pid, &status, blocking ? 0 : WNOHANG) == pid else { return nil }
            let signal = status & 0x7f
            exitStatus = signal == 0 ? (status >> 8) & 0xff : 128 + signal
            return exitStatus
        }
    }

    var isRunning: Bool { reap(blocking: false) == nil }

    /// SIGTERM, then SIGKILL after `grace`; waits for the child and returns its status.
    @discardableResult
    func stop(grace: Duration = .seconds(5)) async -> Int32 {
        if let status = reap(blocking: false) { return status }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline {
            if let status = reap(blocking: false) { return status }
            try? await Task.sleep(for: .milliseconds(10))
        }
        kill(pid, SIGKILL)
        return reap(blocking: true) ?? -1
    }
}
