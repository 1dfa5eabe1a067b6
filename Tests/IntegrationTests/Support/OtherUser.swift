import Foundation

/// Clients that run as another user: `setpriv` drops the test's root to the given
/// uid, gid and groups, then execs the client (curl by default), which connects to
/// the broker socket itself — so the broker sees that process, as it would in use.
enum OtherUser {
    /// Lets other users reach a scenario's socket: the temp directory is 0700 and the
    /// socket 0660 by default.
    static func openUp(_ scenario: Scenario) throws {
        guard chmod(scenario.directory, 0o755) == 0, chmod(scenario.broker.socketPath, 0o666) == 0 else {
            throw HarnessError("cannot open up \(scenario.directory): \(String(cString: strerror(errno)))")
        }
    }

    /// `GET path` over the socket as `uid`/`gid`; `groups` nil clears the supplementary
    /// groups. `cgroup` (a directory under a cgroup v2 mount) is joined before dropping
    /// privileges. Returns the JSON body.
    static func get(
        _ socket: String, _ path: String, uid: UInt32, gid: UInt32? = nil, groups: [UInt32]? = nil, client: String = "/usr/bin/curl",
        cgroup: String? = nil
    ) async throws -> Reply {
        let result = try await run(
            [client, "-s", "--max-time", "30", "--unix-socket", socket, "http://localhost\(path)"], uid: uid, gid: gid ?? uid, groups: groups,
            cgroup: cgroup)
        guard result.status == 0 else { throw HarnessError("client as uid \(uid) failed (\(result.status)): \(result.stderr)") }
        return try Reply(result.stdout)
    }

    /// A token request for `identity` as `uid`.
    static func token(
        _ socket: String, identity: String, uid: UInt32, gid: UInt32? = nil, groups: [UInt32]? = nil, client: String = "/usr/bin/curl",
        cgroup: String? = nil
    ) async throws -> Reply {
        try await get(
            socket, "/v1/token?scope=\(Scenario.scope)&identity=\(identity)", uid: uid, gid: gid, groups: groups, client: client, cgroup: cgroup)
    }

    /// Runs `argv` as `uid`/`gid` (optionally inside `cgroup`).
    static func run(
        _ argv: [String], uid: UInt32, gid: UInt32, groups: [UInt32]?, cgroup: String? = nil
    ) async throws -> (status: Int32, stdout: String, stderr: String) {
        var command = ["/usr/bin/setpriv", "--reuid", "\(uid)", "--regid", "\(gid)"]
        command += groups.map { ["--groups", $0.map(String.init).joined(separator: ",")] } ?? ["--clear-groups"]
        command += argv
        if let cgroup {
            // Join the cgroup as root, then drop privileges in the same process (exec).
            command = ["/bin/sh", "-c", #"echo $$ > "$0/cgroup.procs" && exec "$@""#, cgroup] + command
        }
        return try await runCommand(command[0], Array(command.dropFirst()))
    }
}

/// A private subtree of the cgroup v2 hierarchy, `/tbitXXXXXXXX.slice`, removed with
/// everything below it. Exists only where the test may create cgroups (root, a
/// writable cgroup2 mount); tests that need it are skipped otherwise.
final class CgroupSandbox: @unchecked Sendable {
    /// Where cgroup v2 is mounted: `/sys/fs/cgroup` on v2 hosts, `/sys/fs/cgroup/unified` on hybrid ones.
    static let mount: String? = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"].first { base in
        FileManager.default.fileExists(atPath: "\(base)/cgroup.controllers") && access("\(base)/cgroup.procs", W_OK) == 0
    }

    static var isAvailable: Bool {
        guard let mount else { return false }
        let probe = "\(mount)/tbit-probe-\(getpid())"
        guard mkdir(probe, 0o755) == 0 else { return false }
        rmdir(probe)
        return true
    }

    /// The slice's name, e.g. `tbit1a2b3c4d`: unit names below derive from it.
    let name: String
    /// The slice's cgroup path as /proc/PID/cgroup shows it.
    let path: String
    private var created: [String] = []

    init() throws {
        guard let mount = Self.mount else { throw HarnessError("no writable cgroup v2 mount") }
        name = "tbit" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        path = "/\(name).slice"
        try make(path, under: mount)
    }

    /// Creates `relative` (below the slice) and returns its directory.
    @discardableResult
    func directory(_ relative: String) throws -> String {
        guard let mount = Self.mount else { throw HarnessError("no cgroup mount") }
        var current = path
        for component in relative.split(separator: "/") {
            current += "/\(component)"
            if !FileManager.default.fileExists(atPath: mount + current) { try make(current, under: mount) }
        }
        return mount + current
    }

    private func make(_ cgroupPath: String, under mount: String) throws {
        guard mkdir(mount + cgroupPath, 0o755) == 0 else { throw HarnessError("mkdir \(mount + cgroupPath): \(String(cString: strerror(errno)))") }
        created.append(mount + cgroupPath)
    }

    /// Removes every cgroup made here, deepest first (each is empty once its clients exited).
    func remove() {
        for directory in created.reversed() { rmdir(directory) }
        created.removeAll()
    }
}
