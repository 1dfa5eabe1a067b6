import AsyncHTTPClient
import FoundationEssentials
public import Logging
import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A local OIDC issuer plus an Entra ID token endpoint emulator, for `tokenbrokerd --dev` and tests.
///
/// `start()` binds both HTTPS servers (one generated CA), writes `ca.pem`, the first projected
/// token and `provider.json`, and returns the endpoints. `run()` rotates the token file at the
/// kubelet's cadence until cancelled or gracefully shut down, then closes the servers. The
/// emulator is strict: it rejects what Entra rejects, with Entra's error codes and body shape.
public final class DevIdentityProvider: Service {
    private let configuration: DevIdentityProviderConfiguration
    private let logger: Logger
    private let state = Mutex<Phase>(.idle)

    private enum Phase {
        case idle
        /// Between the first `start()` and its return; files are being written.
        case starting
        case running(Running)
        case stopped
    }

    private struct Running: Sendable {
        var endpoints: DevProviderEndpoints
        var issuer: DevIssuer
        var issuerServer: DevHTTPSServer
        var entraServer: DevHTTPSServer
        var client: HTTPClient
    }

    /// Creates a provider; nothing is bound or written until `start()`.
    public init(configuration: DevIdentityProviderConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Binds both servers, writes `ca.pem`, the first token and `provider.json`; returns when both
    /// servers accept requests. Calling it again returns the same endpoints.
    public func start() async throws -> DevProviderEndpoints {
        let config = configuration
        try config.validate()
        let phase = state.withLock { phase -> Phase in
            let current = phase
            if case .idle = current { phase = .starting }
            return current
        }
        switch phase {
        case .idle: break
        case .running(let running): return running.endpoints
        case .starting:
            // Two starts would write two CAs and tokens into one directory.
            throw DevIdentityProviderError(code: .alreadyStarting, message: "start() is already running on another task")
        case .stopped:
            throw DevIdentityProviderError(code: .stopped, message: "the provider was shut down; create a new one")
        }
        do {
            return try await startServers(config)
        } catch {
            state.withLock { phase in
                if case .starting = phase { phase = .idle }
            }
            throw error
        }
    }

    private func startServers(_ config: DevIdentityProviderConfiguration) async throws -> DevProviderEndpoints {
        let root = config.stateDirectory
        let (tokenDirectory, caFile, authority) = try Self.prepareStateDirectory(root)
        // Saved in the state directory: a restart reads them back instead of generating them.
        async let issuerKey = SigningKeyFile.loadOrGenerate(path: root + "/issuer-key.pem", role: "issuer", logger: logger)
        async let entraKey = SigningKeyFile.loadOrGenerate(path: root + "/entra-key.pem", role: "entra", logger: logger)
        let serverTLS = try authority.serverTLSConfiguration()
        let issuerServer = try await DevHTTPSServer.bind(
            host: config.host, port: config.issuerPort, tls: serverTLS, logger: logger)
        let entraServer: DevHTTPSServer
        do {
            entraServer = try await DevHTTPSServer.bind(host: config.host, port: config.entraPort, tls: serverTLS, logger: logger)
        } catch {
            await issuerServer.close()
            throw error
        }

        let client = try Self.makeClient(trusting: authority)

        let issuerURL = Self.baseURL(host: config.host, port: issuerServer.port)
        let authorityHost = Self.baseURL(host: config.host, port: entraServer.port)
        let endpoints = DevProviderEndpoints(
            issuerURL: issuerURL, authorityHost: authorityHost, tenantId: config.tenantId, clientId: config.clientId,
            caFile: caFile, tokenFile: tokenDirectory + "/" + DevIssuer.tokenFileName, audience: DevIssuer.federationAudience,
            stsTokenEndpoint: authorityHost + "/sts/token", stsAudience: config.stsAudience,
            stsTokenFile: tokenDirectory + "/" + DevIssuer.stsTokenFileName)
        do {
            let issuer = DevIssuer(
                issuerURL: issuerURL, tokenDirectory: tokenDirectory, configuration: config,
                key: try await issuerKey, logger: logger)
            let emulator = EntraEmulator(
                authorityHost: authorityHost, issuerURL: issuerURL, configuration: config, key: try await entraKey,
                keyCache: OIDCKeyCache(client: client, logger: logger), logger: logger)
            issuerServer.serve { await issuer.handle($0) }
            entraServer.serve { await emulator.handle($0) }

            try await issuer.rotateTokenFile()
            let json = try JSONEncoder.pretty.encode(endpoints)
            try AtomicWriter.replaceFile(root + "/provider.json", contents: Array(json), mode: 0o644)

            let running = Running(
                endpoints: endpoints, issuer: issuer, issuerServer: issuerServer, entraServer: entraServer, client: client)
            let published = state.withLock { phase -> Bool in
                guard case .starting = phase else { return false }
                phase = .running(running)
                return true
            }
            guard published else {
                throw DevIdentityProviderError(code: .stopped, message: "the provider was shut down while starting")
            }
        } catch {
            await Self.close(issuerServer: issuerServer, entraServer: entraServer, client: client)
            throw error
        }
        logger.info(
            "dev identity provider ready",
            metadata: ["dev.issuer": "\(issuerURL)", "dev.authority_host": "\(authorityHost)", "dev.state_dir": "\(root)"])
        return endpoints
    }

    /// The state directory, private, with a fresh CA (`ca.pem`) and no stale `provider.json`:
    /// its token directory, the CA file and the CA.
    private static func prepareStateDirectory(_ root: String) throws -> (tokens: String, caFile: String, authority: DevCertificateAuthority) {
        try AtomicWriter.makeDirectory(root, mode: 0o700, allowExisting: true)
        // The state directory holds live tokens: private even if it already existed.
        _ = chmod(root, 0o700)
        // provider.json appearing is the readiness signal other processes wait for: never leave a stale one.
        try? FileManager.default.removeItem(atPath: root + "/provider.json")
        let tokenDirectory = root + "/tokens"
        try AtomicWriter.makeDirectory(tokenDirectory, mode: 0o700, allowExisting: true)

        let authority = try DevCertificateAuthority()
        let caFile = root + "/ca.pem"
        // Explicit modes: Data.write would give 0666 minus the umask, world-writable under umask 000.
        try AtomicWriter.replaceFile(caFile, contents: Array(authority.caPEM.utf8), mode: 0o644)
        return (tokenDirectory, caFile, authority)
    }

    /// The emulator's client for issuers' keys: trusts the dev CA, fails fast.
    private static func makeClient(trusting authority: DevCertificateAuthority) throws -> HTTPClient {
        var configuration = HTTPClient.Configuration(tlsConfiguration: try authority.clientTLSConfiguration())
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(10))
        return HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
    }

    /// Rotates the token file every `rotationInterval` until the task is cancelled or a graceful
    /// shutdown begins, then closes the servers. Starts the provider first if needed.
    public func run() async throws {
        _ = try await start()
        guard case .running(let running) = state.withLock({ $0 }) else { return }
        let interval = configuration.effectiveRotationInterval
        let issuer = running.issuer
        let logger = self.logger
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await Task.sleep(for: interval)
                } catch {
                    return
                }
                do {
                    try await issuer.rotateTokenFile()
                } catch {
                    logger.warning("token rotation failed", metadata: ["error": "\(error)"])
                }
            }
        }
        try await shutdown()
    }

    /// Closes both servers and the key-fetching client. Idempotent.
    public func shutdown() async throws {
        let previous = state.withLock { phase -> Phase in
            let previous = phase
            phase = .stopped
            return previous
        }
        guard case .running(let running) = previous else { return }
        await Self.close(issuerServer: running.issuerServer, entraServer: running.entraServer, client: running.client)
        logger.info("dev identity provider stopped")
    }

    private static func close(issuerServer: DevHTTPSServer, entraServer: DevHTTPSServer, client: HTTPClient) async {
        await issuerServer.close()
        await entraServer.close()
        try? await client.shutdown()
    }

    /// `https://host:port`, bracketing IPv6 literals.
    private static func baseURL(host: String, port: Int) -> String {
        host.contains(":") ? "https://[\(host)]:\(port)" : "https://\(host):\(port)"
    }
}

extension JSONEncoder {
    fileprivate static var pretty: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
