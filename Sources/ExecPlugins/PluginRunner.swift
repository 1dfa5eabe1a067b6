import DetachedThread
import FoundationEssentials
import Glibc
import Logging
import Synchronization
import TokenExchange

/// Runs one configured plugin per call, off the cooperative thread pool, and turns the
/// outcome into an answer or a `PluginFailure`. Holds no state between runs: a plugin that
/// hung, crashed or flooded stdout leaves nothing behind that affects the next run.
struct PluginRunner: Sendable {
    let configuration: ExecPluginConfiguration
    /// The plugin's name as configured (the identity), for messages and logs.
    let name: String
    let logger: Logger

    /// The executable path (the first word of `command`).
    var executable: String { configuration.command.first ?? "" }

    /// How the plugin is named in every message: `exec plugin 'name' (/path)`.
    var label: String {
        name.isEmpty ? "exec plugin \(executable)" : "exec plugin '\(name)' (\(executable))"
    }

    /// Runs the plugin with `input` on stdin and reads its stdout as a `kind` answer; `secrets`
    /// (what `input` carries, such as the assertion) never appear in a failure's reason.
    func answer(input: [UInt8], kind: String, redacting secrets: [String] = []) async throws(PluginFailure) -> PluginDocument.Answer {
        do {
            try configuration.validate()
        } catch {
            throw PluginFailure(.notRunnable, "is misconfigured: \(error)")
        }
        let outcome = await run(input: input)
        switch outcome {
        case .exited(0, let stdout, let stderrTail):
            switch PluginDocument.parseAnswer(stdout, kind: kind, redacting: secrets) {
            case .success(let answer): return answer
            case .failure(.reported(let message, let retryable)):
                throw PluginFailure(.reported(retryable: retryable), "reported an error: \(message)")
            case .failure(.malformed(let reason)):
                throw PluginFailure(.misbehaved, reason + Self.stderrSuffix(stderrTail, redacting: secrets))
            }
        case .exited(let code, let stdout, let stderrTail):
            // A plugin may say why in an Error document and still exit non-zero.
            if case .failure(.reported(let message, let retryable)) = PluginDocument.parseAnswer(stdout, kind: kind, redacting: secrets) {
                throw PluginFailure(.reported(retryable: retryable), "reported an error (exit status \(code)): \(message)")
            }
            throw PluginFailure(.failed, "exited with status \(code)" + Self.stderrSuffix(stderrTail, redacting: secrets))
        case .signaled(let signal, _, let stderrTail):
            throw PluginFailure(
                .failed, "was killed by signal \(signal) (\(Self.signalName(signal)))" + Self.stderrSuffix(stderrTail, redacting: secrets))
        case .timedOut(let leaderExited, let stderrTail):
            let limit = Self.format(configuration.timeout)
            if leaderExited {
                throw PluginFailure(
                    .failed,
                    "exited, but a process it started outside its process group kept its stdout or stderr open "
                        + "past the \(limit) timeout (a plugin must not daemonize)" + Self.stderrSuffix(stderrTail, redacting: secrets))
            }
            throw PluginFailure(
                .failed, "did not answer within \(limit); it and its process group were killed" + Self.stderrSuffix(stderrTail, redacting: secrets))
        case .outputTooLarge(let stderrTail):
            throw PluginFailure(
                .misbehaved,
                "printed more than \(configuration.maxOutputBytes) bytes on stdout; it was killed" + Self.stderrSuffix(stderrTail, redacting: secrets)
            )
        case .cancelled:
            throw PluginFailure(.cancelled, "was stopped because the request was cancelled")
        case .spawnFailed(let code):
            throw PluginFailure(code == EAGAIN || code == ENOMEM ? .failed : .notRunnable, Self.spawnReason(code, executable))
        case .setupFailed(let what, let code):
            throw PluginFailure(.failed, "could not be started: \(what) failed: \(Syscalls.describe(code))")
        }
    }

    /// Runs the process on a dedicated thread and logs one debug line about it.
    func run(input: [UInt8]) async -> PluginOutcome {
        if Task.isCancelled { return .cancelled }
        let spec = PluginProcessSpec(
            argv: configuration.command,
            environment: configuration.spawnEnvironment,
            input: input,
            timeoutNanoseconds: Self.nanoseconds(configuration.timeout),
            maxOutputBytes: configuration.maxOutputBytes)

        var cancelPipe = PluginProcess.Pipe()
        if let failure = Syscalls.makePipe(&cancelPipe) { return .setupFailed(what: "pipe2", errno: failure) }
        let cancelSignal = CancelSignal(fd: cancelPipe.write)
        let cancelFD = cancelPipe.read

        let started = ContinuousClock.now
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<PluginOutcome, Never>) in
                // Blocking poll/read/waitpid: never on the cooperative pool.
                let failure = DetachedThread.tryStart { continuation.resume(returning: PluginProcess.run(spec, cancelFD: cancelFD)) }
                if let failure { continuation.resume(returning: .setupFailed(what: "pthread_create", errno: failure)) }
            }
        } onCancel: {
            cancelSignal.fire()
        }
        cancelSignal.close()
        cancelPipe.closeRead()

        logger.debug(
            "exec plugin ran",
            metadata: [
                "plugin.name": .string(name),
                "plugin.command": .string(executable),
                "plugin.duration_ms": .stringConvertible((ContinuousClock.now - started).milliseconds),
                "plugin.outcome": .string(Self.summary(outcome)),
                "plugin.stdout_bytes": .stringConvertible(Self.stdoutSize(outcome)),
            ])
        return outcome
    }

    // MARK: Wording

    private static func stderrSuffix(_ tail: [UInt8], redacting secrets: [String]) -> String {
        let text = UntrustedText.sanitize(tail, redacting: secrets, limit: 512, keep: .end)
        return text.isEmpty ? "" : "; stderr: \(text)"
    }

    static func spawnReason(_ code: Int32, _ path: String) -> String {
        switch code {
        case ENOENT: "could not be started: \(path) does not exist"
        case EACCES: "could not be started: \(path) is not executable by the daemon's user (permission denied on the file or a directory above it)"
        case ENOEXEC: "could not be started: \(path) is not a runnable program (a script needs a '#!' line)"
        case ENOTDIR: "could not be started: a component of \(path) is not a directory"
        case EISDIR: "could not be started: \(path) is a directory"
        default: "could not be started: \(path): \(Syscalls.describe(code))"
        }
    }

    private static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGKILL: "SIGKILL"
        case SIGTERM: "SIGTERM"
        case SIGSEGV: "SIGSEGV"
        case SIGABRT: "SIGABRT"
        case SIGINT: "SIGINT"
        case SIGPIPE: "SIGPIPE"
        case SIGBUS: "SIGBUS"
        default: "signal \(signal)"
        }
    }

    /// `10 s`, `1.5 s` or `250 ms`.
    static func format(_ duration: Duration) -> String {
        let milliseconds = duration.milliseconds
        if milliseconds % 1000 == 0 { return "\(milliseconds / 1000) s" }
        if milliseconds >= 1000 { return "\(Double(milliseconds) / 1000) s" }
        return "\(milliseconds) ms"
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? Int64.max / 2 : whole + attoseconds / 1_000_000_000
    }

    private static func summary(_ outcome: PluginOutcome) -> String {
        switch outcome {
        case .exited(let code, _, _): "exit \(code)"
        case .signaled(let signal, _, _): "signal \(signal)"
        case .timedOut: "timeout"
        case .outputTooLarge: "output too large"
        case .cancelled: "cancelled"
        case .spawnFailed(let code): "spawn failed (errno \(code))"
        case .setupFailed(let what, let code): "\(what) failed (errno \(code))"
        }
    }

    private static func stdoutSize(_ outcome: PluginOutcome) -> Int {
        switch outcome {
        case .exited(_, let stdout, _), .signaled(_, let stdout, _): stdout.count
        default: 0
        }
    }
}

/// Wakes the run's poll loop when the calling task is cancelled: a byte written to a pipe
/// whose read end the loop watches. Closing is idempotent and ordered with `fire()`.
private final class CancelSignal: Sendable {
    private let fd: Mutex<Int32>

    init(fd: Int32) { self.fd = Mutex(fd) }

    func fire() {
        fd.withLock { fd in
            guard fd >= 0 else { return }
            var byte: UInt8 = 1
            _ = write(fd, &byte, 1)
        }
    }

    func close() {
        fd.withLock { fd in Syscalls.closeIfOpen(&fd) }
    }
}

extension Duration {
    /// Whole milliseconds.
    fileprivate var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
