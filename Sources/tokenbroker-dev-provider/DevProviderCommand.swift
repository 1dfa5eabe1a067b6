import ArgumentParser
import BrokerApp
import DetachedThread
import DevIdentityProvider
import FoundationEssentials
import Glibc
import Logging
import ServiceLifecycle
import UnixSignals

/// `tokenbroker-dev-provider`: the dev OIDC issuer and Entra-compatible token service in a
/// process of their own. `tokenbrokerd --dev` starts it as its child; tests and benchmarks run
/// it beside a broker configured as in production.
///
/// Why a separate executable: its RS256 signing and generated CA need swift-crypto,
/// swift-certificates and jwt-kit, ~5 MiB the daemon would otherwise carry into production
/// (docs/benchmarks.md, sixth round).
@main
struct DevProviderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenbroker-dev-provider",
        abstract: "Run the dev OIDC issuer and Entra-compatible token service; endpoints go to STATE_DIR/provider.json.")

    @Option(name: .long, help: "Directory for the CA, tokens and provider.json.")
    var stateDir: String

    @Option(name: .long, parsing: .singleValue, help: "Another accepted service-account subject (repeatable).")
    var subject: [String] = []

    @Option(name: .long, parsing: .singleValue, help: "Another accepted client (application) id (repeatable).")
    var clientId: [String] = []

    @Option(name: .long, parsing: .singleValue, help: "An app with a federated credential of its own: CLIENT_ID=SUBJECT (repeatable).")
    var app: [String] = []

    @Option(name: .long, help: "Lifetime of issued access tokens, seconds.")
    var accessTokenLifetime: Int = 3600

    @Option(name: .long, help: "Lifetime of minted service-account tokens, seconds.")
    var assertionLifetime: Int = 3600

    @Option(name: .long, help: "Rotate the token file every N seconds (default 80 % of its lifetime).")
    var rotateEvery: Int?

    @Option(
        name: .long,
        help: "Run as tokenbrokerd --dev's child: write 'ready' to this inherited socket once provider.json is written, and stop when it closes."
    )
    var parentFd: Int32?

    @Option(name: .long, help: "Log level: \(LogLevelName.all.joined(separator: ", ")).")
    var logLevel: String = "info"

    @Option(name: .long, help: "auto (journald when stderr is the journal, else text), text, json, journal.")
    var logFormat: String = "auto"

    func validate() throws {
        guard LogLevelName.parse(logLevel) != nil else {
            throw ValidationError("--log-level must be one of \(LogLevelName.all.joined(separator: ", "))")
        }
        guard LogSetup.Format(rawValue: logFormat) != nil else {
            throw ValidationError("--log-format must be one of \(LogSetup.Format.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let parentFd, fcntl(parentFd, F_GETFD) < 0 { throw ValidationError("--parent-fd \(parentFd) is not an open descriptor") }
    }

    func run() async throws {
        defer { LogSetup.flush() }
        BrokerApplication.resetSignalMask()
        if parentFd != nil {
            // As tokenbrokerd --dev's child it stops when the daemon's end of the socket closes,
            // not on a signal: Ctrl-C at a terminal or a SIGTERM to the whole cgroup is the
            // daemon's to handle (a child that exits first looks to the daemon like a crash).
            signal(SIGINT, SIG_IGN)
            signal(SIGTERM, SIG_IGN)
        }
        let environment = ProcessInfo.processInfo.environment
        let logger = LogSetup.bootstrap(
            format: LogSetup.Format(rawValue: logFormat) ?? .auto, level: logLevel, environment: environment, label: "tokenbroker-dev-provider")
        let provider = DevIdentityProvider(configuration: providerConfiguration(), logger: logger)
        let endpoints = try await provider.start()
        logger.info("dev provider ready", metadata: ["dev.issuer": "\(endpoints.issuerURL)", "dev.authority": "\(endpoints.authorityHost)"])
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: provider)], gracefulShutdownSignals: parentFd == nil ? [.sigterm, .sigint] : [], logger: logger))
        if let parentFd { Self.serveParent(parentFd, group: group) }
        try await group.run()
    }

    /// Tells the parent the provider is ready, then stops the provider when the parent's end
    /// closes — however the parent ended (a provider left behind would keep its ports and
    /// rotate tokens for no one). Not `PR_SET_PDEATHSIG`: it fires when the parent's spawning
    /// *thread* exits, which in a multithreaded daemon is not the daemon exiting.
    private static func serveParent(_ descriptor: Int32, group: ServiceGroup) {
        _ = "ready\n".withCString { write(descriptor, $0, strlen($0)) }
        DetachedThread.start {
            var byte: UInt8 = 0
            while true {
                let count = read(descriptor, &byte, 1)
                if count == 0 || (count < 0 && errno != EINTR) { break }
            }
            Task { await group.triggerGracefulShutdown() }
            // A graceful shutdown that hangs must not leave the provider behind either.
            sleep(5)
            _exit(1)
        }
    }

    private func providerConfiguration() -> DevIdentityProviderConfiguration {
        var configuration = DevIdentityProviderConfiguration(stateDirectory: stateDir)
        configuration.extraSubjects = subject
        configuration.extraClientIds = clientId
        configuration.appSubjects = Dictionary(
            app.compactMap { pair in pair.firstIndex(of: "=").map { (String(pair[..<$0]), [String(pair[pair.index(after: $0)...])]) } },
            uniquingKeysWith: +)
        configuration.accessTokenLifetime = .seconds(accessTokenLifetime)
        configuration.assertionLifetime = .seconds(assertionLifetime)
        configuration.rotationInterval = rotateEvery.map { .seconds($0) }
        return configuration
    }
}
