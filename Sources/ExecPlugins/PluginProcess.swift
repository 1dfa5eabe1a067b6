import Glibc

/// What to run: everything `PluginProcess.run` needs, already resolved.
struct PluginProcessSpec: Sendable {
    /// Absolute executable path first, then its arguments (argv as is: no shell).
    var argv: [String]
    /// The complete environment, as `KEY=value` strings.
    var environment: [String]
    /// The request document written to stdin before it is closed.
    var input: [UInt8]
    /// How long the plugin may take, from spawn to the end of its output.
    var timeoutNanoseconds: Int64
    /// stdout beyond this many bytes kills the plugin.
    var maxOutputBytes: Int
    /// How much of the end of stderr is kept for error messages.
    var stderrTailBytes: Int = 512
}

/// How a run ended, as seen by the process layer (no JSON yet).
enum PluginOutcome: Sendable, Equatable {
    /// The plugin exited by itself, with this code.
    case exited(code: Int32, stdout: [UInt8], stderrTail: [UInt8])
    /// The plugin was ended by a signal it did not get from us.
    case signaled(signal: Int32, stdout: [UInt8], stderrTail: [UInt8])
    /// The deadline passed; the process group was killed. `leaderExited`: the plugin itself had
    /// exited but something it started (outside its process group) kept stdout or stderr open.
    case timedOut(leaderExited: Bool, stderrTail: [UInt8])
    /// stdout passed the limit; the process group was killed.
    case outputTooLarge(stderrTail: [UInt8])
    /// The caller gave up (task cancelled); the process group was killed.
    case cancelled
    /// `posix_spawn` failed with this errno (missing or non-executable file, …).
    case spawnFailed(errno: Int32)
    /// Setting up the run failed (`what` names the call).
    case setupFailed(what: String, errno: Int32)
}

/// Runs one plugin process to completion: spawn, feed stdin, collect stdout and the tail of
/// stderr under a deadline, kill the process group when it must, and always reap the child.
///
/// Blocking: call it on a thread of its own, never on Swift's cooperative pool.
///
/// Why `posix_spawn` with `POSIX_SPAWN_SETPGROUP` rather than `Foundation.Process`: a new
/// process group lets one `kill(-pgid, SIGKILL)` end the plugin and everything it started;
/// `SETSIGMASK`/`SETSIGDEF` keep the daemon's blocked or ignored signals (SIGTERM blocked in
/// service threads, SIGPIPE ignored) from leaking into the plugin; and reaping is ours, so
/// there is exactly one `waitpid` per child and no zombie.
enum PluginProcess {
    /// Runs `spec`. `cancelFD` is the read end of a pipe that becomes readable when the caller
    /// gives up; it is polled with the plugin's pipes and is not closed here.
    static func run(_ spec: PluginProcessSpec, cancelFD: Int32) -> PluginOutcome {
        guard let path = spec.argv.first else { return .spawnFailed(errno: ENOENT) }

        // SIGPIPE is thread-directed when our write to stdin hits a plugin that closed it:
        // block it on this thread (EPIPE is handled) so it can never end the daemon.
        var sigpipe = sigset_t()
        sigemptyset(&sigpipe)
        sigaddset(&sigpipe, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &sigpipe, nil)

        var stdinPipe = Pipe(), stdoutPipe = Pipe(), stderrPipe = Pipe()
        if let failure = Syscalls.makePipe(&stdinPipe) ?? Syscalls.makePipe(&stdoutPipe) ?? Syscalls.makePipe(&stderrPipe) {
            stdinPipe.closeBoth(); stdoutPipe.closeBoth(); stderrPipe.closeBoth()
            return .setupFailed(what: "pipe2", errno: failure)
        }

        let spawned = spawn(path: path, spec: spec, stdin: stdinPipe.read, stdout: stdoutPipe.write, stderr: stderrPipe.write)
        // The child has its copies (or there is no child): drop ours of its ends.
        stdinPipe.closeRead(); stdoutPipe.closeWrite(); stderrPipe.closeWrite()
        guard case .success(let pid) = spawned else {
            stdinPipe.closeWrite(); stdoutPipe.closeRead(); stderrPipe.closeRead()
            if case .failure(let error) = spawned { return .spawnFailed(errno: error.errno) }
            return .spawnFailed(errno: EINVAL)
        }

        var session = Session(
            pid: pid, spec: spec, cancelFD: cancelFD,
            stdinFD: stdinPipe.write, stdoutFD: stdoutPipe.read, stderrFD: stderrPipe.read)
        let ending = session.pump()
        session.closeAll()
        // Whatever happened, the group goes before the leader is reaped: while the leader is an
        // unreaped zombie its pid (the pgid) cannot be reused, so this kill cannot hit a stranger.
        kill(-pid, SIGKILL)
        let status = Syscalls.reap(pid)

        switch ending {
        case .finished:
            if let signal = status.signal {
                return .signaled(signal: signal, stdout: session.stdout, stderrTail: session.stderrTail)
            }
            return .exited(code: status.code ?? -1, stdout: session.stdout, stderrTail: session.stderrTail)
        case .timedOut: return .timedOut(leaderExited: session.leaderExited, stderrTail: session.stderrTail)
        case .outputTooLarge: return .outputTooLarge(stderrTail: session.stderrTail)
        case .cancelled: return .cancelled
        }
    }

    private struct SpawnError: Error { var errno: Int32 }

    /// `posix_spawn` the plugin with its pipes as fds 0–2, in a new process group, with an
    /// empty signal mask and default dispositions.
    private static func spawn(path: String, spec: PluginProcessSpec, stdin: Int32, stdout: Int32, stderr: Int32) -> Result<pid_t, SpawnError> {
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        guard posix_spawn_file_actions_init(&actions) == 0 else { return .failure(SpawnError(errno: ENOMEM)) }
        defer { posix_spawn_file_actions_destroy(&actions) }
        guard posix_spawnattr_init(&attributes) == 0 else { return .failure(SpawnError(errno: ENOMEM)) }
        defer { posix_spawnattr_destroy(&attributes) }

        // dup2 clears FD_CLOEXEC on the copy; the originals (all O_CLOEXEC) vanish at exec.
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        SpawnIsolation.apply(to: &actions, &attributes, closingFrom: 3)

        let argv = spec.argv.map { strdup($0) } + [nil]
        let envp = spec.environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid = pid_t()
        var result = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        // A file just written can be open for writing in a process forked at that moment
        // (until it execs): exec then fails with ETXTBSY for a short while. Try again a
        // few times (this runs on the plugin runner's own thread, not an event loop).
        for _ in 0..<5 where result == ETXTBSY {
            usleep(20_000)
            result = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        }
        // glibc reports exec failures (ENOENT, EACCES, ENOEXEC) here, not as exit 127.
        return result == 0 ? .success(pid) : .failure(SpawnError(errno: result))
    }

    /// Our ends of one pipe; -1 once closed.
    struct Pipe {
        var read: Int32 = -1
        var write: Int32 = -1
        mutating func closeRead() { Syscalls.closeIfOpen(&read) }
        mutating func closeWrite() { Syscalls.closeIfOpen(&write) }
        mutating func closeBoth() { closeRead(); closeWrite() }
    }
}
