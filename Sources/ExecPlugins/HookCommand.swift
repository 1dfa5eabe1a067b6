public import Logging

/// Runs a command for its side effect (a sink's `onRotate`), with the same process handling
/// as a plugin: no shell, its own process group killed at the timeout, reaped exactly once,
/// off the cooperative pool. Its stdout is discarded and nothing is written to its stdin.
public struct HookCommand: Sendable {
    private let runner: PluginRunner

    /// A command: `configuration.command` is the absolute executable path and its arguments.
    public init(_ configuration: ExecPluginConfiguration, name: String, logger: Logger) {
        runner = PluginRunner(configuration: configuration, name: name, logger: logger)
    }

    /// Runs the command once and says how it ended: nil for exit status 0, else a short
    /// reason (`exited with status 3`, `did not finish within 10 s; it was killed`).
    public func run() async -> String? {
        switch await runner.run(input: []) {
        case .exited(0, _, _): nil
        case .exited(let code, _, _): "exited with status \(code)"
        case .signaled(let signal, _, _): "was killed by signal \(signal)"
        case .timedOut: "did not finish within \(PluginRunner.format(runner.configuration.timeout)); it and its process group were killed"
        case .outputTooLarge: "printed more than \(runner.configuration.maxOutputBytes) bytes; it was killed"
        case .cancelled: "was stopped (shutting down)"
        case .spawnFailed(let code): PluginRunner.spawnReason(code, runner.executable)
        case .setupFailed(let what, let code): "could not be started: \(what) failed: \(Syscalls.describe(code))"
        }
    }
}
