import Glibc
import NIOCore
import NIOPosix

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
    /// Reads groups and a pidfd on the event loop (non-blocking socket options), then
    /// `/proc` on NIO's blocking-I/O pool: procfs reads are fast but may wait on kernel
    /// locks of the target process, and the event loop must never wait.
    static func attest(_ channel: any Channel, credentials: KernelPeerCredentials, threadPool: NIOThreadPool) -> EventLoopFuture<PeerCredentials> {
        let base = PeerCredentials(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
        guard let provider = channel as? any SocketOptionProvider else { return channel.eventLoop.makeSucceededFuture(base) }
        let groups = supplementaryGroups(provider)
        let pid = credentials.pid
        guard pid > 0 else {
            return groups.map { PeerCredentials(pid: pid, uid: credentials.uid, gid: credentials.gid, supplementaryGroups: $0) }
        }
        return groups.and(pidfd(provider, pid: pid)).flatMap { groups, pidfd in
            let peer = PeerCredentials(pid: pid, uid: credentials.uid, gid: credentials.gid, supplementaryGroups: groups)
            guard let pidfd else { return channel.eventLoop.makeSucceededFuture(peer) }
            return threadPool.runIfActive(eventLoop: channel.eventLoop) {
                defer { close(pidfd) }
                guard let process = ProcessSnapshot.read(pid: pid, pidfd: pidfd) else { return peer }
                return PeerCredentials(
                    pid: pid, uid: credentials.uid, gid: credentials.gid, supplementaryGroups: groups,
                    executable: process.executable, cgroup: process.cgroup)
            }.flatMapErrorThrowing { _ in
                // The pool is shutting down and did not run the read: the pidfd is still ours.
                close(pidfd)
                return peer
            }
        }
    }

    // MARK: Groups

    /// `SO_PEERGROUPS` (59): the caller's supplementary groups at connect time.
    static let peerGroupsOption = NIOBSDSocket.Option(rawValue: 59)
    /// `SO_PEERPIDFD` (77, Linux 6.5): a pidfd for the process that connected.
    static let peerPIDFDOption = NIOBSDSocket.Option(rawValue: 77)

    /// NIO's `getsockopt` hands back a fixed-size value and drops the returned length, so
    /// the list is recovered from the kernel's layout: `setgroups()` keeps groups sorted
    /// ascending and the buffer starts zeroed, so the list ends at the last non-zero
    /// entry. All zeros is either no groups or just group 0; a zero-length read tells
    /// them apart (the kernel refuses it with ERANGE when there is any group). If a user
    /// namespace mapping ever unsorted the list, a trailing 0 would be lost: that can
    /// only deny, never grant.
    static func supplementaryGroups(_ provider: any SocketOptionProvider) -> EventLoopFuture<[UInt32]?> {
        let small: EventLoopFuture<GroupBuffer<64>> = provider.unsafeGetSocketOption(level: .socket, name: peerGroupsOption)
        return small.map { Optional($0.groups) }.flatMap { groups -> EventLoopFuture<[UInt32]?> in
            guard let groups, groups.isEmpty else { return provider.eventLoop.makeSucceededFuture(groups) }
            let probe: EventLoopFuture<EmptyOption> = provider.unsafeGetSocketOption(level: .socket, name: peerGroupsOption)
            return probe.map { _ in [] }.recover { isRangeError($0) ? [0] : nil }
        }.flatMapError { error in
            // ERANGE: more than 64 groups. NGROUPS_MAX is 65536 (256 KiB, allocated only here).
            guard isRangeError(error) else { return provider.eventLoop.makeSucceededFuture(nil) }
            let large: EventLoopFuture<GroupBuffer<65536>> = provider.unsafeGetSocketOption(level: .socket, name: peerGroupsOption)
            return large.map { Optional($0.groups) }.recover { _ in nil }
        }
    }

    private static func isRangeError(_ error: any Error) -> Bool {
        (error as? IOError)?.errnoCode == ERANGE
    }

    // MARK: Process

    /// A pidfd for the peer: `SO_PEERPIDFD` pins exactly the process that connected;
    /// `pidfd_open(pid)` (Linux 5.3) is the fallback and pins whatever has the PID now,
    /// which the start-time check below can only partly cover.
    static func pidfd(_ provider: any SocketOptionProvider, pid: Int32) -> EventLoopFuture<Int32?> {
        let fromSocket: EventLoopFuture<CInt> = provider.unsafeGetSocketOption(level: .socket, name: peerPIDFDOption)
        return fromSocket.map { Optional($0) }.recover { _ in
            guard let open = SyscallWrappers.pidfdOpen else { return nil }
            let fd = open(pid, 0)
            return fd >= 0 ? fd : nil
        }
    }
}

/// A zero-length socket option buffer.
struct EmptyOption: Sendable {}

/// A fixed buffer of `count` gids for `SO_PEERGROUPS`.
struct GroupBuffer<let count: Int>: Sendable {
    var gids: InlineArray<count, UInt32>

    /// The gids, up to the last non-zero one (see `PeerAttestation.supplementaryGroups`).
    var groups: [UInt32] {
        var end = 0
        for index in gids.indices where gids[index] != 0 { end = index + 1 }
        var result: [UInt32] = []
        result.reserveCapacity(end)
        for index in 0..<end { result.append(gids[index]) }
        return result
    }
}

/// What `/proc/PID` says about a process pinned by a pidfd.
struct ProcessSnapshot: Sendable, Equatable {
    var executable: String?
    var cgroup: String?

    /// Reads the executable and cgroup of `pid`, or nil unless the reads provably
    /// describe the process `pidfd` refers to: it still has `pid`, its start time is
    /// the same before and after, and it is alive after the reads.
    static func read(pid: Int32, pidfd: Int32) -> ProcessSnapshot? {
        guard pidOfPIDFD(pidfd) == pid, let started = startTime(pid) else { return nil }
        let executable = readLink("/proc/\(pid)/exe")
        let cgroup = readSmallFile("/proc/\(pid)/cgroup").flatMap(CgroupPath.select(fromProcFile:))
        guard startTime(pid) == started, isAlive(pidfd) else { return nil }
        return ProcessSnapshot(executable: executable, cgroup: cgroup)
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
