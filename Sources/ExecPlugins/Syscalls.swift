import Glibc

/// The few Linux calls the plugin runner needs beyond what Swift's `Glibc` module shows.
///
/// `pipe2`, `pidfd_open` and `posix_spawn_file_actions_addclosefrom_np` are declared by
/// glibc only under `_GNU_SOURCE`, which the `Glibc` module map does not set. They are
/// looked up once with `dlsym` (glibc 2.9, 2.36 and 2.34 respectively); each has a fallback
/// for an older glibc or kernel, so a missing one degrades the run, never breaks it.
enum Syscalls {
    private typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>?, Int32) -> Int32
    private typealias PidfdOpen = @convention(c) (pid_t, UInt32) -> Int32
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32

    // C function pointers are Sendable; each is looked up once, lazily.
    private static let pipe2Function: Pipe2? =
        dlsym(nil, "pipe2").map { unsafeBitCast($0, to: Pipe2.self) }
    private static let pidfdOpenFunction: PidfdOpen? =
        dlsym(nil, "pidfd_open").map { unsafeBitCast($0, to: PidfdOpen.self) }
    private static let addCloseFromFunction: AddCloseFrom? =
        dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map { unsafeBitCast($0, to: AddCloseFrom.self) }

    /// Creates a pipe whose both ends are close-on-exec; returns errno on failure.
    ///
    /// `pipe2(O_CLOEXEC)` sets the flag atomically, so a process spawned by another thread
    /// at the same moment cannot inherit our ends (which would hold a plugin's stdout open).
    static func makePipe(_ pipe: inout PluginProcess.Pipe) -> Int32? {
        var fds: [Int32] = [-1, -1]
        let result = fds.withUnsafeMutableBufferPointer { buffer in
            if let pipe2Function { return pipe2Function(buffer.baseAddress, O_CLOEXEC) }
            guard Glibc.pipe(buffer.baseAddress) == 0 else { return -1 }
            _ = fcntl(buffer[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(buffer[1], F_SETFD, FD_CLOEXEC)
            return 0
        }
        guard result == 0 else { return errno }
        pipe.read = fds[0]
        pipe.write = fds[1]
        return nil
    }

    /// Adds "close every descriptor from `lowest` on" to the spawn actions, where glibc has it.
    static func addCloseFrom(_ actions: inout posix_spawn_file_actions_t, _ lowest: Int32) {
        _ = addCloseFromFunction?(&actions, lowest)
    }

    /// A pidfd for `pid` (readable when it exits), or -1.
    static func pidfdOpen(_ pid: pid_t) -> Int32 {
        pidfdOpenFunction?(pid, 0) ?? -1
    }

    /// Whether `pid` has exited, without reaping it (so its pid stays reserved).
    static func hasExited(_ pid: pid_t) -> Bool {
        var info = siginfo_t()
        guard waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 else { return true }
        return info._sifields._kill.si_pid == pid
    }

    /// How a reaped child ended.
    struct Status {
        /// The exit code when it exited.
        var code: Int32?
        /// The signal when a signal ended it.
        var signal: Int32?
    }

    /// Waits for `pid` and reaps it. Only called once its process group has been sent SIGKILL
    /// or it has exited, so this does not block for long.
    static func reap(_ pid: pid_t) -> Status {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { return Status() }
        }
        let low = status & 0x7f
        if low == 0 { return Status(code: (status >> 8) & 0xff) }
        return Status(signal: low)
    }

    /// CLOCK_MONOTONIC in nanoseconds.
    static func monotonicNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    static func setNonBlocking(_ fd: Int32) {
        guard fd >= 0 else { return }
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    static func closeIfOpen(_ fd: inout Int32) {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    /// Consumes the SIGPIPE an EPIPE write left pending on this thread (it is blocked here).
    static func discardPendingSIGPIPE() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGPIPE)
        var zero = timespec()
        _ = sigtimedwait(&set, nil, &zero)
    }

    /// A readable description of an errno value.
    static func describe(_ code: Int32) -> String {
        String(cString: strerror(code))
    }
}
