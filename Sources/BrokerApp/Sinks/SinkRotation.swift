import ExecPlugins
import FoundationEssentials
import Glibc
import Logging
import PlainJSON
import TokenExchange

/// Runs a sink's `onRotate` once after a new token was written: a command (no shell, its
/// process group killed at the timeout) or a signal to the process a pid file names.
struct SinkRotation: Sendable {
    let action: SinkSettings.RotateAction
    let path: String
    let logger: Logger

    /// Runs the action; nil when it succeeded, else why not.
    func run() async -> SinkError? {
        switch action {
        case .command(let command, let timeoutSeconds):
            let configuration = ExecPluginConfiguration(
                command: command, environment: ["TOKENBROKER_SINK_PATH": path], timeout: .seconds(timeoutSeconds), maxOutputBytes: 64 << 10)
            let problem = await HookCommand(configuration, name: "onRotate of \(path)", logger: logger).run()
            logger.info(
                "sink rotate command ran",
                metadata: [
                    "sink.path": "\(path)", "sink.command": "\(command[0])", "sink.outcome": "\(problem ?? "exited with status 0")",
                ])
            return problem.map { SinkError(.rotateFailed, "onRotate command \(command[0]) \($0)") }
        case .signal(let name, let pidFile):
            let signal = SinkReader.signals[name] ?? SIGHUP
            let pid: pid_t
            do {
                let text = try RegularFile.read(pidFile, limit: 64)
                guard let parsed = pid_t(text.trimmed()), parsed > 1 else {
                    return SinkError(.rotateFailed, "onRotate pid file \(pidFile) holds no process id above 1")
                }
                pid = parsed
            } catch {
                return SinkError(.rotateFailed, "cannot read the onRotate pid file \(pidFile): \(error)")
            }
            guard kill(pid, signal) == 0 else {
                return SinkError(.rotateFailed, "cannot send SIG\(name) to pid \(pid) (from \(pidFile)): \(String(cString: strerror(errno)))")
            }
            logger.info("sink rotate signal sent", metadata: ["sink.path": "\(path)", "sink.signal": "SIG\(name)", "sink.pid": "\(pid)"])
            return nil
        }
    }
}
