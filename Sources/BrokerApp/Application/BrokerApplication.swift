import AssertionSources
import BrokerServer
public import Foundation
import Glibc
public import Logging
import NIOCore
import NIOPosix
public import ServiceLifecycle
import UnixSignals
import TokenCache
import TokenExchange
import UpstreamHTTP

/// Wires configuration into running parts and runs them in one `ServiceGroup`
/// until SIGTERM or SIGINT. The order of services encodes dependencies: the
/// listener is last, so on shutdown it stops first and drains before the cache
/// and sources go away.
public enum BrokerApplication {
    /// Runs the broker.
    ///
    /// - Parameters:
    ///   - configuration: A validated configuration.
    ///   - environment: The process environment (read for `SSL_CERT_FILE`).
    ///   - extraServices: Started first, stopped last (the dev provider).
    ///   - onReady: Called once the socket is bound and accepting.
    public static func run(
        configuration: BrokerConfiguration,
        environment: [String: String],
        extraServices: [any Service] = [],
        logger: Logger,
        onReady: @Sendable () -> Void = {}
    ) async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        var upstream = UpstreamHTTPConfiguration()
        upstream.requestTimeout = .seconds(configuration.upstream.timeoutSeconds)
        upstream = .configuration(environment: environment, caFile: configuration.upstream.caFile, base: upstream)
        let transport = try AsyncHTTPTransport(configuration: upstream, logger: logger, eventLoopGroup: group)

        var cacheConfiguration = TokenCacheConfiguration()
        cacheConfiguration.maxScopesPerIdentity = configuration.cache.maxScopesPerIdentity
        cacheConfiguration.defaultMinimumValidity = .seconds(configuration.cache.minValiditySeconds)
        let cache = TokenCache(configuration: cacheConfiguration, clock: ContinuousClock(), now: { Date() }, logger: logger)

        let daemonUID = getuid()
        var identities: [Broker.Identity] = []
        for identity in configuration.identities {
            guard case .file(let path) = identity.source else { continue }
            let source = FileAssertionSource(path: path, now: { Date() }, logger: logger.with("token.identity", identity.name))
            let exchanger: any TokenExchanger
            switch identity.exchange {
            case .entra(let entra):
                exchanger = EntraExchanger(configuration: entra, transport: transport, now: { Date() })
            }
            cache.register(identity: identity.name, fetcher: AssertionExchange(source: source, exchanger: exchanger))
            identities.append(Broker.Identity(configuration: identity, source: source, policy: AccessPolicy(rules: identity.allow, daemonUID: daemonUID)))
        }
        let broker = Broker(identities: identities, cache: cache, defaultMinimumValidity: configuration.cache.minValiditySeconds, logger: logger)

        var serverConfiguration = BrokerServerConfiguration()
        serverConfiguration.socketPath = configuration.socket.path
        serverConfiguration.socketMode = configuration.socket.mode
        serverConfiguration.socketGroup = try configuration.socket.group.map(resolveGroup)
        serverConfiguration.maxConnections = configuration.limits.maxConnections
        serverConfiguration.idleTimeout = .seconds(configuration.limits.idleTimeoutSeconds)
        let server = BrokerServer(configuration: serverConfiguration, responder: broker, group: group, logger: logger)
        try await server.bind()

        let prefetcher = Prefetcher(
            scopes: configuration.identities.flatMap { identity in identity.prefetch.map { TokenKey(identity: identity.name, scope: $0) } },
            cache: cache, logger: logger)
        let services: [any Service] = extraServices + identities.map(\.source) + [cache, prefetcher, server]
        let serviceGroup = ServiceGroup(
            configuration: .init(services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        logger.info("ready", metadata: ["socket.path": "\(configuration.socket.path)", "broker.identities": "\(configuration.identities.map(\.name).joined(separator: ","))"])
        onReady()
        do {
            try await serviceGroup.run()
        } catch {
            try? await transport.shutdown()
            throw error
        }
        try? await transport.shutdown()
        logger.info("stopped")
    }

    private static func resolveGroup(_ name: String) throws -> UInt32 {
        if let gid = UInt32(name) { return gid }
        guard let entry = getgrnam(name) else {
            throw ConfigurationError(origin: "configuration", issues: [.init(path: "socket.group", message: "no such group '\(name)'")])
        }
        return entry.pointee.gr_gid
    }
}

extension Logger {
    /// A copy with one more metadata value.
    func with(_ key: String, _ value: String) -> Logger {
        var copy = self
        copy[metadataKey: key] = "\(value)"
        return copy
    }
}
