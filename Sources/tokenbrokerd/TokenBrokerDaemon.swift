import ArgumentParser
import BrokerApp
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
        let finished = DispatchSemaphore(value: 0)
        Task.detached {
            await TokenBrokerDaemon.main()
            finished.signal()
        }
        finished.wait()
    }
}

/// `tokenbrokerd`: the daemon. Thin wiring only: parse arguments, set up logging,
/// hand over to `BrokerApp`.
struct TokenBrokerDaemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenbrokerd",
        abstract: "Workload-identity token broker: exchanges federated assertions for access tokens and serves them on a Unix socket.",
        version: BuildVersion.text,
        subcommands: [Run.self, CheckConfig.self],
        defaultSubcommand: Run.self
    )
}

/// Options shared by the subcommands that log.
struct LoggingOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: \(LogLevelName.all.joined(separator: ", ")).")
    var logLevel: String?

    @Option(name: .long, help: "auto (journald when stderr is the journal, else text), text, json, journal.")
    var logFormat: String = "auto"

    func validate() throws {
        if let logLevel, LogLevelName.parse(logLevel) == nil {
            throw ValidationError("--log-level must be one of \(LogLevelName.all.joined(separator: ", "))")
        }
        if LogSetup.Format(rawValue: logFormat) == nil {
            throw ValidationError("--log-format must be one of \(LogSetup.Format.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func bootstrap(configured: String = "info") -> Logger {
        LogSetup.bootstrap(
            format: LogSetup.Format(rawValue: logFormat) ?? .auto, level: logLevel ?? configured, environment: ProcessInfo.processInfo.environment)
    }
}

extension TokenBrokerDaemon {
    /// Runs the broker (the default subcommand).
    struct Run: AsyncParsableCommand {
        // Named here: the derived name is String(describing: Self), a conformance scan of the whole binary.
        static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the broker.")

        @Option(name: .long, help: "Configuration file.")
        var config: String?

        @Option(name: .long, help: "Socket path (overrides the configuration).")
        var socket: String?

        @Flag(name: .long, help: "Dev mode: embedded OIDC issuer and Entra-compatible token service; no cloud account needed.")
        var dev = false

        @Option(name: .long, help: "Dev mode: directory for the dev CA, tokens and socket (default /tmp/tokenbroker-dev-UID).")
        var stateDir: String?

        @Flag(name: .long, help: "Validate the configuration, print every problem, and exit.")
        var checkConfig = false

        @OptionGroup var logging: LoggingOptions

        func run() async throws {
            defer { LogSetup.flush() }
            BrokerApplication.resetSignalMask()
            let environment = ProcessInfo.processInfo.environment
            BrokerApplication.limitHeapArenas(environment: environment)
            if dev {
                let logger = logging.bootstrap()
                let logArguments = ["--log-format", logging.logFormat] + (logging.logLevel.map { ["--log-level", $0] } ?? [])
                try await DevMode.run(
                    stateDirectory: stateDir, socketPath: socket, logArguments: logArguments, environment: environment, logger: logger)
                return
            }
            var configuration = try ConfigurationSource.load(path: config, environment: environment)
            if checkConfig {
                print(ConfigurationSource.validSummary(configuration))
                return
            }
            if let socket { configuration.socket.path = socket }
            // --log-level wins over the file, at start and on every reload.
            let levelOverride = logging.logLevel.flatMap(LogLevelName.parse)
            if let levelOverride { configuration.log.level = levelOverride }
            let logger = logging.bootstrap(configured: configuration.log.level)
            ConfigurationSource.warnAboutPermissions(path: config, logger: logger)
            let path = config
            let socketOverride = socket
            try await BrokerApplication.run(
                configuration: configuration, environment: environment,
                reload: {
                    // SIGHUP: the same sources as at start; a broken file throws and the old configuration stays.
                    var fresh = try ConfigurationSource.read(path: path, environment: environment)
                    ConfigurationSource.warnAboutPermissions(path: path, logger: logger)
                    if let socketOverride { fresh.socket.path = socketOverride }
                    if let levelOverride { fresh.log.level = levelOverride }
                    return fresh
                },
                logger: logger)
        }
    }

    /// `tokenbrokerd check-config`.
    struct CheckConfig: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check-config", abstract: "Validate the configuration and print every problem with its field path.")

        @Option(name: .long, help: "Configuration file.")
        var config: String?

        func run() throws {
            let configuration = try ConfigurationSource.load(path: config, environment: ProcessInfo.processInfo.environment)
            print(ConfigurationSource.validSummary(configuration))
        }
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
            let line = Array("tokenbrokerd: invalid configuration: \(error)\n".utf8)
            _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
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
