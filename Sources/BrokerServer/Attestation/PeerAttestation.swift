import Glibc

/// Learns who is on the other end of a new connection, once, when it is accepted — so
/// no request pays for it and nothing is read from `/proc` while requests are answered.
///
/// - `SO_PEERCRED` (uid, gid, pid) and `SO_PEERGROUPS` (supplementary groups) are the
///   credentials the kernel recorded at `connect()`; no PID is involved.
/// - Executable and cgroup come from `/proc/PID`, where a PID can be reused. Like
///   SPIRE's peer tracker, the broker pins the process first with a pidfd (the kernel's
///   `SO_PEERPIDFD`, which names the very process that connected; `pidfd_open` on older
///   kernels), reads, then checks that the pidfd's process is still alive and that its
///   start time did not change. A live pidfd means the PID still names that process, so
///   what was read belongs to it; otherwise the attributes are left out.
enum PeerAttestation {
    /// `SO_PEERCRED` of a Unix socket: the pid, uid and gid of the process that connected.
    static func credentials(of socket: CInt) -> KernelPeerCredentials? {
        var credentials = KernelPeerCredentials()
        var length = socklen_t(MemoryLayout<KernelPeerCredentials>.size)
        guard getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 else { return nil }
        return credentials
    }

    /// Everything the broker learns about a caller, read at accept on the accepting loop,
    /// before the connection is read or anything else is queued: socket options, then
    /// `/proc` through a pidfd. The procfs reads are a few microseconds; doing them here
    /// rather than on a shared pool means no other work (a loopback flood, a slow lookup)
    /// can delay them, and the window in which a caller could exec another binary after
    /// connecting and be attested as that binary is as short as the broker can make it.
    static func attest(_ socket: CInt, credentials: KernelPeerCredentials, environment names: [String] = []) -> PeerCredentials {
        let pid = credentials.pid
        let groups = supplementaryGroups(of: socket)
        guard pid > 0, let pidfd = pidfd(of: socket, pid: pid) else {
            return PeerCredentials(pid: pid, uid: credentials.uid, gid: credentials.gid, supplementaryGroups: groups)
        }
        defer { close(pidfd) }
        let process = ProcessSnapshot.read(pid: pid, pidfd: pidfd, environment: names)
        var peer = PeerCredentials(
            pid: pid, uid: credentials.uid, gid: credentials.gid, supplementaryGroups: groups,
            executable: process?.executable, executableFile: process?.executableFile, cgroup: process?.cgroup)
        peer.environment = process?.environment
        return peer
    }

    // MARK: Groups

    /// `SO_PEERGROUPS` (59): the caller's supplementary groups at connect time.
    static let peerGroupsOption: CInt = 59
    /// `SO_PEERPIDFD` (77, Linux 6.5): a pidfd for the process that connected.
    static let peerPIDFDOption: CInt = 77

    /// The kernel says how many bytes the list takes, and refuses a buffer too small for
    /// it with ERANGE (having written the size needed): 64 groups first, then the size asked.
    static func supplementaryGroups(of socket: CInt) -> [UInt32]? {
        var capacity = 64
        for _ in 0..<2 {
            var groups = [UInt32](repeating: 0, count: capacity)
            var length = socklen_t(capacity * MemoryLayout<UInt32>.size)
            if getsockopt(socket, SOL_SOCKET, peerGroupsOption, &groups, &length) == 0 {
                return Array(groups.prefix(Int(length) / MemoryLayout<UInt32>.size))
            }
            guard errno == ERANGE else { return nil }
            capacity = Int(length) / MemoryLayout<UInt32>.size  // NGROUPS_MAX is 65536: 256 KiB at most
        }
        return nil
    }

    // MARK: Process

    /// A pidfd for the peer: `SO_PEERPIDFD` pins exactly the process that connected;
    /// `pidfd_open(pid)` (Linux 5.3) is the fallback on kernels without the option, and pins
    /// whatever has the PID now, which the start-time check below can only partly cover.
    /// On a kernel with the option, a failure means the caller is gone (its PID may already
    /// be another process's): no pidfd, so no executable or cgroup.
    static func pidfd(of socket: CInt, pid: Int32) -> CInt? {
        var pidfd: CInt = -1
        var length = socklen_t(MemoryLayout<CInt>.size)
        if getsockopt(socket, SOL_SOCKET, peerPIDFDOption, &pidfd, &length) == 0, pidfd >= 0 { return pidfd }
        guard errno == ENOPROTOOPT, let open = SyscallWrappers.pidfdOpen else { return nil }
        let fd = open(pid, 0)
        return fd >= 0 ? fd : nil
    }
}

/// What `/proc/PID` says about a process pinned by a pidfd.
struct ProcessSnapshot: Sendable, Equatable {
    var executable: String?
    /// What the executable is, not what its path says: a bind mount over the path in the
    /// caller's mount namespace changes the path's meaning but not this.
    var executableFile: FileIdentity?
    var cgroup: String?
    /// The requested variables of its environment (nil when none were asked for).
    var environment: [String: String]?

    /// Reads the executable and cgroup of `pid`, or nil unless the reads provably
    /// describe the process `pidfd` refers to: it still has `pid`, its start time is
    /// the same before and after, and it is alive after the reads.
    static func read(pid: Int32, pidfd: Int32, environment names: [String] = []) -> ProcessSnapshot? {
        guard pidOfPIDFD(pidfd) == pid, let started = startTime(pid) else { return nil }
        let executable = readLink("/proc/\(pid)/exe")
        let executableFile = FileIdentity(path: "/proc/\(pid)/exe")  // stat follows the link to the file itself
        let cgroup = readSmallFile("/proc/\(pid)/cgroup").flatMap(CgroupPath.select(fromProcFile:))
        let environment = names.isEmpty ? nil : readSmallFile("/proc/\(pid)/environ").map { Self.variables(names, in: $0) } ?? [:]
        guard startTime(pid) == started, isAlive(pidfd) else { return nil }
        return ProcessSnapshot(executable: executable, executableFile: executableFile, cgroup: cgroup, environment: environment)
    }

    /// `names`' values in a `NAME=value\0…` block (as the process was started: a process can
    /// change its environment later only in its own memory, which /proc does not show).
    static func variables(_ names: [String], in block: String) -> [String: String] {
        var found: [String: String] = [:]
        for entry in block.split(separator: "\0") {
            guard let equals = entry.firstIndex(of: "=") else { continue }
            let name = String(entry[..<equals])
            if names.contains(name), found[name] == nil { found[name] = String(entry[entry.index(after: equals)...]) }
        }
        return found
    }

    /// The PID a pidfd refers to (`Pid:` in its fdinfo; -1 once the process is gone).
    static func pidOfPIDFD(_ pidfd: Int32) -> Int32? {
        guard let info = readSmallFile("/proc/self/fdinfo/\(pidfd)") else { return nil }
        for line in info.split(separator: "\n") where line.hasPrefix("Pid:") {
            return Int32(line.dropFirst(4).trimmingPrefix(while: { $0 == " " || $0 == "\t" }))
        }
        return nil
    }

    /// Field 22 of `/proc/PID/stat`: start time in clock ticks since boot. The command
    /// name (field 2) may contain spaces and parentheses, so fields are counted from the
    /// last `)`.
    static func startTime(_ pid: Int32) -> UInt64? {
        guard let stat = readSmallFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); field 22 is fields[19].
        guard fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }

    /// A pidfd becomes readable when its process exits; poll without waiting.
    static func isAlive(_ pidfd: Int32) -> Bool {
        var entry = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&entry, 1, 0)
        return ready == 0
    }

    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink(path, &buffer, buffer.count - 1)
        guard length > 0 else { return nil }
        return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A procfs file of at most 64 KiB.
    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 64 * 1024 {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes.append(contentsOf: chunk[..<n])
        }
        return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
    }
}

/// System calls glibc wraps but Swift's Glibc module does not declare (and `syscall`
/// is variadic, so Swift cannot call it): looked up once by name.
enum SyscallWrappers {
    typealias PIDFDOpen = @convention(c) (pid_t, UInt32) -> Int32

    /// glibc 2.36's `pidfd_open`, or nil on an older libc.
    static let pidfdOpen: PIDFDOpen? = {
        guard let symbol = dlsym(nil, "pidfd_open") else { return nil }
        return unsafeBitCast(symbol, to: PIDFDOpen.self)
    }()
}

/// The layout of Linux `struct ucred` (pid, uid, gid), which Glibc's Swift
/// module does not export without `_GNU_SOURCE`.
struct KernelPeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}
