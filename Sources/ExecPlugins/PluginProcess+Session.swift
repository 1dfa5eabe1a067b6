import Glibc

extension PluginProcess {
    /// Why the pump loop stopped.
    enum Ending: Equatable {
        /// The plugin exited and stdout and stderr reached end of file.
        case finished
        case timedOut
        case outputTooLarge
        case cancelled
    }

    /// The I/O of one running plugin: feeds stdin, drains stdout and stderr, watches for the
    /// leader's exit, all in one `poll(2)` loop bounded by the deadline.
    struct Session {
        let pid: pid_t
        let spec: PluginProcessSpec
        let cancelFD: Int32
        private var stdinFD: Int32
        private var stdoutFD: Int32
        private var stderrFD: Int32
        /// A pidfd for the leader (readable once it exits); -1 where the kernel has none.
        private var pidFD: Int32
        private var written = 0
        private var stragglersKilled = false
        private var stderrBuffer: [UInt8] = []

        /// Everything the plugin printed on stdout (at most `maxOutputBytes`).
        private(set) var stdout: [UInt8] = []
        /// Whether the leader has exited (it is not reaped here).
        private(set) var leaderExited = false

        init(pid: pid_t, spec: PluginProcessSpec, cancelFD: Int32, stdinFD: Int32, stdoutFD: Int32, stderrFD: Int32) {
            self.pid = pid
            self.spec = spec
            self.cancelFD = cancelFD
            self.stdinFD = stdinFD
            self.stdoutFD = stdoutFD
            self.stderrFD = stderrFD
            self.pidFD = Syscalls.pidfdOpen(pid)
            // Non-blocking so that a plugin that does not read cannot stall the loop on a
            // full pipe; poll() says when there is room.
            Syscalls.setNonBlocking(stdinFD)
            if spec.input.isEmpty { Syscalls.closeIfOpen(&self.stdinFD) }
        }

        /// The last `stderrTailBytes` bytes the plugin wrote to stderr.
        var stderrTail: [UInt8] { Array(stderrBuffer.suffix(spec.stderrTailBytes)) }

        /// Closes whatever is still open (not `cancelFD`, which belongs to the caller).
        mutating func closeAll() {
            Syscalls.closeIfOpen(&stdinFD)
            Syscalls.closeIfOpen(&stdoutFD)
            Syscalls.closeIfOpen(&stderrFD)
            Syscalls.closeIfOpen(&pidFD)
        }

        /// Runs until the plugin is done, the deadline passes, stdout grows too large or the
        /// caller cancels.
        mutating func pump() -> Ending {
            let deadline = Syscalls.monotonicNanoseconds() + spec.timeoutNanoseconds
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                let outputOpen = stdoutFD >= 0 || stderrFD >= 0
                if !leaderExited, pidFD < 0, !outputOpen {
                    // No pidfd: after end of file, look for the exit without reaping.
                    leaderExited = Syscalls.hasExited(pid)
                }
                if leaderExited {
                    if !outputOpen { return .finished }
                    if !stragglersKilled {
                        // The plugin is gone but something it started still holds its output
                        // open: end its process group now rather than wait for the deadline.
                        kill(-pid, SIGKILL)
                        stragglersKilled = true
                    }
                }

                let remaining = deadline - Syscalls.monotonicNanoseconds()
                guard remaining > 0 else { return .timedOut }
                var waitMilliseconds = Int32(clamping: (remaining + 999_999) / 1_000_000)
                if pidFD < 0, !outputOpen { waitMilliseconds = min(waitMilliseconds, 10) }

                var fds: [pollfd] = []
                let cancelIndex = fds.append(fd: cancelFD, events: POLLIN)
                let stdinIndex = stdinFD >= 0 ? fds.append(fd: stdinFD, events: POLLOUT) : nil
                let stdoutIndex = stdoutFD >= 0 ? fds.append(fd: stdoutFD, events: POLLIN) : nil
                let stderrIndex = stderrFD >= 0 ? fds.append(fd: stderrFD, events: POLLIN) : nil
                let pidIndex = pidFD >= 0 && !leaderExited ? fds.append(fd: pidFD, events: POLLIN) : nil

                let ready = poll(&fds, nfds_t(fds.count), waitMilliseconds)
                if ready < 0 {
                    if errno == EINTR { continue }
                    return .timedOut  // cannot happen with valid fds; never spin
                }
                if fds[cancelIndex].revents != 0 { return .cancelled }
                if let pidIndex, fds[pidIndex].revents != 0 { leaderExited = true }
                if let stdinIndex, fds[stdinIndex].revents != 0 { feedStdin() }
                if let stdoutIndex, fds[stdoutIndex].revents != 0 {
                    guard drain(stdout: true, into: &buffer) else { return .outputTooLarge }
                }
                if let stderrIndex, fds[stderrIndex].revents != 0 {
                    _ = drain(stdout: false, into: &buffer)
                }
            }
        }

        /// Writes what the pipe takes of the request; closes stdin when all is written or the
        /// plugin closed its end (it need not read the request).
        private mutating func feedStdin() {
            let result = spec.input.withUnsafeBytes { bytes in
                write(stdinFD, bytes.baseAddress! + written, bytes.count - written)
            }
            if result > 0 {
                written += result
                if written == spec.input.count { Syscalls.closeIfOpen(&stdinFD) }
            } else if result < 0, errno != EAGAIN, errno != EINTR {
                if errno == EPIPE { Syscalls.discardPendingSIGPIPE() }
                Syscalls.closeIfOpen(&stdinFD)
            }
        }

        /// Reads one chunk from stdout or stderr; closes it at end of file (or on a read
        /// error). Returns false when stdout passed the limit.
        private mutating func drain(stdout isStdout: Bool, into buffer: inout [UInt8]) -> Bool {
            let fd = isStdout ? stdoutFD : stderrFD
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if count < 0, errno == EAGAIN || errno == EINTR { return true }
            if count <= 0 {
                if isStdout { Syscalls.closeIfOpen(&stdoutFD) } else { Syscalls.closeIfOpen(&stderrFD) }
                return true
            }
            if isStdout {
                guard stdout.count + count <= spec.maxOutputBytes else { return false }
                stdout.append(contentsOf: buffer[0..<count])
            } else {
                stderrBuffer.append(contentsOf: buffer[0..<count])
                if stderrBuffer.count > 2 * spec.stderrTailBytes + buffer.count {
                    stderrBuffer.removeFirst(stderrBuffer.count - spec.stderrTailBytes)
                }
            }
            return true
        }
    }
}

extension [pollfd] {
    /// Appends a descriptor to watch and returns its index.
    fileprivate mutating func append(fd: Int32, events: Int32) -> Int {
        append(pollfd(fd: fd, events: Int16(events), revents: 0))
        return count - 1
    }
}
