import BrokerServer
import FoundationEssentials
import Glibc
public import Logging
import TokenExchange

/// `tokenbrokerd --dev`: a local OIDC issuer and Entra-compatible token service (the
/// `tokenbroker-dev-provider` child process), and the broker wired to them — a real
/// federated exchange with no cloud account.
public enum DevMode {
    /// Where dev mode keeps its files unless told otherwise: `/tmp/tokenbroker-dev-UID`.
    public static var defaultStateDirectory: String { "/tmp/tokenbroker-dev-\(getuid())" }

    /// Starts the provider and the broker; returns at shutdown. `logArguments` (`--log-level`,
    /// `--log-format`) are passed on to the provider.
    public static func run(
        stateDirectory: String?, socketPath: String?, logArguments: [String], environment: [String: String], logger: Logger
    ) async throws {
        let state = try DevStateDirectory(path: stateDirectory ?? defaultStateDirectory)
        defer { state.unlock() }
        let directory = state.path
        let provider = try await DevProviderProcess.start(stateDirectory: "\(directory)/provider", logArguments: logArguments)
        let endpoints = provider.endpoints

        var configuration = BrokerConfiguration()
        configuration.socket.path = socketPath ?? "\(directory)/broker.sock"
        configuration.upstream.caFile = endpoints.caFile
        // Unmodified Azure SDKs too: the App Service and IMDS endpoints on a free loopback port.
        configuration.compat.tcp = TCPAddress(host: "127.0.0.1", port: 0)
        configuration.compat.identityHeaderFile = "\(directory)/identity-header"
        configuration.identities = [
            IdentityConfiguration(
                name: "default",
                source: .file(path: endpoints.tokenFile),
                exchange: .entra(
                    try EntraConfiguration(tenantId: endpoints.tenantId, clientId: endpoints.clientId, authorityHost: endpoints.authorityHost)))
        ]
        let socket = configuration.socket.path
        // Its only token service is the emulator: trust its CA alone and parse no system bundle.
        try await BrokerApplication.run(
            configuration: configuration, environment: environment, extraServices: [provider], trustSystemRoots: false, logger: logger
        ) {
            // One write, so the banner is complete the moment a reader sees it.
            let text = banner(socket: socket, endpoints: endpoints) + "\n"
            _ = text.withCString { write(STDOUT_FILENO, $0, strlen($0)) }
        }
    }

    static func banner(socket: String, endpoints: DevProviderProcess.Endpoints) -> String {
        let scope = "https://storage.azure.com/.default"
        return """
            tokenbrokerd is running in dev mode.
              socket:      \(socket)
              issuer:      \(endpoints.issuerURL)   (service-account token: \(endpoints.tokenFile))
              token issuer: \(endpoints.authorityHost)/\(endpoints.tenantId)/oauth2/v2.0/token  (client \(endpoints.clientId))
              CA:          \(endpoints.caFile)
            Get a token:
              export TOKENBROKER_SOCKET=\(socket)
              tokenbroker get --scope \(scope)
              curl -s --unix-socket \(socket) 'http://localhost/v1/token?scope=\(scope)'
              printf '{"op":"token","scope":"\(scope)"}\\n' | socat - UNIX-CONNECT:\(socket)
            Unmodified Azure SDKs (App Service and IMDS endpoints on loopback):
              tokenbroker env                               # IDENTITY_ENDPOINT, IDENTITY_HEADER, …
              tokenbroker exec -- python3 your_app.py      # runs it with them set
            Stop with Ctrl-C.
            """
    }
}
