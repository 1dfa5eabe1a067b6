import BrokerApp
import CommandLineTable
import Dispatch
import FoundationEssentials
import Glibc
import Logging
import TokenBrokerProtocol

/// The entry point. Not an `async` main: on Linux that parks the main thread in
/// `dispatch_main()`, which ends the thread with `pthread_exit`, and its forced unwind reads
/// ~0.5 MiB of unwind tables at every start (docs/benchmarks.md, seventh round). The main
/// thread waits for the command instead; nothing in the daemon runs on the main actor.
@main
enum DaemonEntryPoint {
    static func main() {
        let tool = TokenBrokerDaemon.tool
        switch tool.read(Array(CommandLine.arguments.dropFirst())) {
        case .output(let text):
            print(text, terminator: "")
            exit(0)
        case .usageError(let text):
            writeStandardError(text)
            exit(64)  // EX_USAGE
        case .run(let spec, let arguments):
            let command: TokenBrokerDaemon
            do {
                command = try TokenBrokerDaemon(spec, arguments)
            } catch {
                writeStandardError(tool.usageError(error.message, command: spec))
                exit(64)
            }
            // Here, before any other thread exists: a thread that allocates first gets an arena
            // of its own, whatever the cap says afterwards (the cap was set in the command's
            // task, whose pool thread had already made a second arena).
            BrokerApplication.limitHeapArenas(environment: ProcessInfo.processInfo.environment)
            let finished = DispatchSemaphore(value: 0)
            let status = ExitStatus()
            Task.detached {
                status.code = await command.run()
                finished.signal()
            }
            finished.wait()
            exit(status.code)
        }
    }
}

/// The command's exit status, written by its task before it signals the main thread, which
/// reads it after the wait: the semaphore orders the two.
private final class ExitStatus: @unchecked Sendable {
    var code: Int32 = 0
}

/// `tokenbrokerd`: the daemon. Thin wiring only: read the command line, set up logging,
/// hand over to `BrokerApp`.
struct TokenBrokerDaemon: Sendable {
    static let logOptions: [OptionSpec] = [
        .option("log-level", help: "Log level: \(LogLevelName.all.joined(separator: ", ")) (default: the configuration's, else info)."),
        .option(
            "log-format", help: "Log format; auto is journald when stderr is the journal, else text.",
            default: LogSetup.Format.auto.rawValue, choices: LogSetup.Format.allCases.map(\.rawValue)),
    ]

    static let run = CommandSpec(
        name: "run", abstract: "Run the broker.",
        options: [
            .option("config", help: "Configuration file."),
            .option("socket", help: "Socket path (overrides the configuration)."),
            .flag("dev", help: "Dev mode: embedded OIDC issuer and Entra-compatible token service; no cloud account needed."),
            .option("state-dir", help: "Dev mode: directory for the dev CA, tokens and socket (default /tmp/tokenbroker-dev-UID)."),
            .flag("check-config", help: "Validate the configuration, print every problem, and exit."),
        ] + logOptions)

    static let checkConfig = CommandSpec(
        name: "check-config", abstract: "Validate the configuration and print every problem with its field path.",
        options: [.option("config", help: "Configuration file.")])

    static let tool = Tool(
        name: "tokenbrokerd",
        abstract: "Workload-identity token broker: exchanges federated assertions for access tokens and serves them on a Unix socket.",
        version: BuildVersion.text, commands: [run, checkConfig], defaultCommand: run.name)

    let config: String?
    let socket: String?
    let dev: Bool
    let stateDir: String?
    let checkOnly: Bool
    let logLevel: String?
    let logFormat: LogSetup.Format

    init(_ spec: CommandSpec, _ arguments: ParsedArguments) throws(UsageError) {
        config = arguments.string("config")
        socket = arguments.string("socket")
        dev = arguments.flag("dev")
        stateDir = arguments.string("state-dir")
        checkOnly = spec.name == Self.checkConfig.name || arguments.flag("check-config")
        if let level = arguments.string("log-level") {
            guard let parsed = LogLevelName.parse(level) else {
                throw UsageError("--log-level must be one of \(LogLevelName.all.joined(separator: ", "))")
            }
            logLevel = parsed
        } else {
            logLevel = nil
        }
        logFormat = arguments.choice("log-format") ?? .auto
    }

    /// Runs the command; its exit status.
    func run() async -> Int32 {
        defer { LogSetup.flush() }
        do {
            try await serve()
            return 0
        } catch let exit as ExitCode {
            return exit.status
        } catch let invalid as ConfigurationError {
            // Found only once starting (a file the configuration names cannot be used).
            writeStandardError("tokenbrokerd: invalid configuration: \(invalid)\n")
            return 78  // EX_CONFIG
        } catch {
            writeStandardError("Error: \(error)\n")
            return 1
        }
    }

    private func bootstrap(configured: String = "info") -> Logger {
        LogSetup.bootstrap(format: logFormat, level: logLevel ?? configured, environment: ProcessInfo.processInfo.environment)
    }

    private func serve() async throws {
        let environment = ProcessInfo.processInfo.environment
        if checkOnly {
            let configuration = try ConfigurationSource.load(path: config, environment: environment)
            print(ConfigurationSource.validSummary(configuration))
            return
        }
        BrokerApplication.resetSignalMask()
        if dev {
            let logger = bootstrap()
            let logArguments = ["--log-format", logFormat.rawValue] + (logLevel.map { ["--log-level", $0] } ?? [])
            try await DevMode.run(stateDirectory: stateDir, socketPath: socket, logArguments: logArguments, environment: environment, logger: logger)
            return
        }
        var configuration = try ConfigurationSource.load(path: config, environment: environment)
        if let socket { configuration.socket.path = socket }
        // --log-level wins over the file, at start and on every reload.
        if let logLevel { configuration.log.level = logLevel }
        let logger = bootstrap(configured: configuration.log.level)
        ConfigurationSource.warnAboutPermissions(path: config, logger: logger)
        try await BrokerApplication.run(
            configuration: configuration, environment: environment,
            reload: { [self] in
                // SIGHUP: the same sources as at start; a broken file throws and the old configuration stays.
                var fresh = try ConfigurationSource.read(path: config, environment: environment)
                ConfigurationSource.warnAboutPermissions(path: config, logger: logger)
                if let socket { fresh.socket.path = socket }
                if let logLevel { fresh.log.level = logLevel }
                return fresh
            },
            logger: logger)
    }
}

/// Loads the configuration from a file and/or the environment, or exits with
/// every problem listed.
enum ConfigurationSource {
    static let defaultPath = "/etc/tokenbroker/config.yaml"

    /// Reads the configuration; throws `ConfigurationError` listing every problem.
    static func read(path: String?, environment: [String: String]) throws(ConfigurationError) -> BrokerConfiguration {
        if let path { return try ConfigurationLoader.load(path: path, environment: environment) }
        if FileManager.default.fileExists(atPath: defaultPath) { return try ConfigurationLoader.load(path: defaultPath, environment: environment) }
        return try ConfigurationLoader.load(yaml: "", origin: "environment", environment: environment)
    }

    /// Logs a warning for each problem with who may change the configuration file.
    static func warnAboutPermissions(path: String?, logger: Logger) {
        guard let file = path ?? (FileManager.default.fileExists(atPath: defaultPath) ? defaultPath : nil) else { return }
        for warning in ConfigurationFileSafety.warnings(path: file) {
            logger.warning("\(warning.message)", metadata: ["config.path": "\(warning.path)", "config.mode": "0\(String(warning.mode, radix: 8))"])
        }
    }

    static func load(path: String?, environment: [String: String]) throws -> BrokerConfiguration {
        do {
            return try read(path: path, environment: environment)
        } catch {
            writeStandardError("tokenbrokerd: invalid configuration: \(error)\n")
            throw ExitCode(78)  // EX_CONFIG
        }
    }
}

extension ConfigurationSource {
    /// What `check-config` prints for a valid configuration.
    static func validSummary(_ configuration: BrokerConfiguration) -> String {
        let count = configuration.identities.count
        let nodeMode = configuration.kubernetes.map { "; node mode on (pods in \($0.podsDirectory))" } ?? ""
        return "configuration is valid: \(count) identit\(count == 1 ? "y" : "ies")\(nodeMode)"
    }
}
