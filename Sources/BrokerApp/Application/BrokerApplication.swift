import BrokerServer
import CMalloc
import FoundationEssentials
import Glibc
public import Logging
import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization
import SystemdSupport
import TokenBrokerProtocol
import TokenCache
import UnixSignals
import UpstreamHTTP

/// Wires configuration into running parts and runs them in one `ServiceGroup`
/// until SIGTERM or SIGINT. The order of services encodes dependencies: on
/// shutdown they stop in reverse order, so systemd hears `STOPPING=1` first, then
/// the listener drains, then the refresher, sources and extras go away.
public enum BrokerApplication {
    /// Clears the signal mask inherited from whoever started us: a supervisor that
    /// blocks SIGTERM in its threads would otherwise make us unstoppable but by SIGKILL.
    public static func resetSignalMask() {
        var none = sigset_t()
        sigemptyset(&none)
        sigprocmask(SIG_SETMASK, &none, nil)
    }

    /// Keeps glibc to one heap arena; call it before any other thread starts. glibc gives
    /// threads that allocate arenas of their own (up to eight per CPU; a cap set after a
    /// thread has made one does not take it back), and the event loops and the concurrency
    /// pool then hold several half-empty heaps: 14 MiB of 100 with 10,000 cached tokens
    /// once, still 1.2 MiB of 34 with two arenas (docs/benchmarks.md). One
    /// arena costs the serving path nothing measurable: a cached answer allocates at most
    /// three blocks, which each thread's cache (tcache) serves without the arena's lock.
    /// `MALLOC_ARENA_MAX` or a `glibc.malloc.arena_max` tunable in the environment wins.
    public static func limitHeapArenas(environment: [String: String]) {
        guard !arenaLimitIsSet(environment: environment) else { return }
        _ = mallopt(M_ARENA_MAX, 1)
    }

    /// Whether the environment sets glibc's arena limit itself.
    static func arenaLimitIsSet(environment: [String: String]) -> Bool {
        // GLIBC_TUNABLES is `name=value:name=value`, split on characters rather than searched
        // for a substring: `String.contains(String)` is _StringProcessing, whose code (0.4 MiB,
        // one section) would then be among the pages every start maps (docs/benchmarks.md).
        let tunables = (environment["GLIBC_TUNABLES"] ?? "").split(separator: ":")
        return environment["MALLOC_ARENA_MAX"] != nil || tunables.contains { $0.hasPrefix("glibc.malloc.arena_max=") }
    }

    /// Runs the broker.
    ///
    /// - Parameters:
    ///   - configuration: A validated configuration.
    ///   - environment: The process environment (read for `SSL_CERT_FILE`).
    ///   - reload: Re-reads the configuration on SIGHUP; nil disables reload.
    ///   - extraServices: Started first, stopped last (the dev provider).
    ///   - trustSystemRoots: False trusts `upstream.caFile` alone (dev mode).
    ///   - onReady: Called once the socket is bound and accepting.
    public static func run(
        configuration: BrokerConfiguration,
        environment: [String: String],
        reload: (@Sendable () throws -> BrokerConfiguration)? = nil,
        extraServices: [any Service] = [],
        trustSystemRoots: Bool = true,
        logger: Logger,
        onReady: @escaping @Sendable () -> Void = {}
    ) async throws {
        // The Unix socket is served by the server's own loops (`limits.eventLoopThreads`);
        // NIO's loop carries the calls to token services and the loopback compatibility
        // listeners. A group of our own rather than NIO's shared one (one thread per CPU).
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            try await run(
                configuration: configuration, environment: environment, group: group, reload: reload, extraServices: extraServices,
                trustSystemRoots: trustSystemRoots, logger: logger, onReady: onReady)
        } catch {
            await bounded(.milliseconds(250)) { try? await group.shutdownGracefully() }
            throw error
        }
        await bounded(.milliseconds(250)) { try? await group.shutdownGracefully() }
    }

    private static func run(
        configuration: BrokerConfiguration,
        environment: [String: String],
        group: MultiThreadedEventLoopGroup,
        reload: (@Sendable () throws -> BrokerConfiguration)?,
        extraServices: [any Service],
        trustSystemRoots: Bool,
        logger: Logger,
        onReady: @escaping @Sendable () -> Void
    ) async throws {
        // Before the transport, which must be shut down once made.
        var serviceAccountKeys: ClusterKeys?
        var keyClient: APIServerKeys?
        if let settings = configuration.kubernetes {
            (serviceAccountKeys, keyClient) = try await ClusterKeys.load(settings, environment: environment, group: group, logger: logger)
        }
        let transport: AsyncHTTPTransport
        do {
            transport = try upstreamTransport(
                configuration, trustSystemRoots: trustSystemRoots, environment: environment, group: group, logger: logger)
        } catch {
            await keyClient?.shutdown()
            throw error
        }
        if configuration.identities.isEmpty, configuration.kubernetes == nil {
            // Started with nothing to serve (no file, no AZURE_* variables): say so at start,
            // not only in each caller's refusal.
            logger.warning(
                "no identities are configured: every token request will be refused. Add identities to the configuration file (docs/configuration.md) or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE"
            )
        }
        let metrics = BrokerMetrics()
        let runtime = BrokerRuntime(
            configuration: configuration, transport: transport, metrics: metrics, serviceAccountKeys: serviceAccountKeys, logger: logger)
        metrics.describe(runtime)
        runtime.apply(configuration)

        let passed = SocketActivation.inherited()
        let inherited = passed.sockets
        // Before anything serves: a caller's first request finds the restored tokens.
        let warmRestart = WarmRestart(runtime: runtime, logger: logger)
        warmRestart.restore(from: passed.stored[FileDescriptorStore.tokenCacheName])
        // The socket named `broker`, or the only one passed if it is not named `compat`.
        let descriptor =
            (inherited.first(where: { $0.name == "broker" }) ?? (inherited.count == 1 && inherited[0].name != "compat" ? inherited.first : nil))?
            .descriptor
        let listener = try serverConfiguration(configuration, inheritedDescriptor: descriptor)
        // The server listens inside the ServiceGroup, whose signal handling is in place by then.
        // A Unix socket (the usual case) is served on the broker's own loops; `group` only
        // if the inherited socket is TCP.
        let server = BrokerServers.make(.unix(listener), responder: runtime.broker, metrics: metrics, group: { group }, logger: logger)
        let compat = try compatServers(
            configuration, listener: listener, inheritedDescriptor: inherited.first(where: { $0.name == "compat" })?.descriptor,
            broker: runtime.broker, defaultIdentity: runtime.compatDefaultIdentity, group: group, logger: logger)
        metrics.countConnections { server.openConnections + compat.servers.reduce(0) { $0 + $1.openConnections } }

        let lifecycle = SystemdLifecycle(
            runtime: runtime, server: server,
            servingLoops: { [cache = runtime.cache] in
                compat.servers.reduce(server.servingLoops) { $0 + $1.servingLoops } + .eventLoops(of: group) { _ = cache.count }
            },
            readiness: configuration.readiness,
            prefetch: configuration.identities.flatMap { identity in identity.prefetch.map { TokenKey(identity: identity.name, scope: $0) } },
            reload: reload, logger: logger,
            beforeReady: {
                for server in compat.servers { try await server.waitUntilListening() }
                compat.publish()
            },
            onReady: onReady)
        let prefetcher = Prefetcher(runtime: runtime, logger: logger)
        let services: [any Service] =
            extraServices + [runtime.audit, warmRestart, runtime, runtime.cache, runtime.sinks] + runtime.nodeServices + [prefetcher] + compat.servers
            + [server, lifecycle]
        try await runServiceGroup(services, logger: logger) { [keyClient] in
            try? await transport.shutdown()
            await keyClient?.shutdown()
        }
    }

    /// The client of the token services, on `group`.
    private static func upstreamTransport(
        _ configuration: BrokerConfiguration, trustSystemRoots: Bool, environment: [String: String], group: MultiThreadedEventLoopGroup,
        logger: Logger
    ) throws -> AsyncHTTPTransport {
        var upstream = UpstreamHTTPConfiguration()
        upstream.trustSystemRoots = trustSystemRoots
        upstream.requestTimeout = .seconds(configuration.upstream.timeoutSeconds)
        upstream.allowInsecureHTTPForLoopback = configuration.upstream.allowInsecureLoopback
        upstream = .configuration(environment: environment, caFile: configuration.upstream.caFile, base: upstream)
        return try AsyncHTTPTransport(configuration: upstream, logger: logger, eventLoopGroup: group)
    }

    /// Runs `services` in one group until SIGTERM or SIGINT (in order; stopped in reverse),
    /// then `closeClients` (the HTTPS clients' connections).
    private static func runServiceGroup(
        _ services: [any Service], logger: Logger, closeClients: @escaping @Sendable () async -> Void
    ) async throws {
        let serviceGroup = ServiceGroup(
            configuration: .init(
                services: services.map(ServiceGroupConfiguration.ServiceConfiguration.named), gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        do {
            try await serviceGroup.run()
        } catch {
            await bounded(.milliseconds(250), closeClients)
            throw error
        }
        await bounded(.milliseconds(250), closeClients)
        logger.info("stopped")
    }

    /// Runs `operation` (a shutdown of connections to token services) and returns when it
    /// is done or after `limit`, whichever comes first. A hung token service never answers
    /// the TLS close, AsyncHTTPClient and NIO wait ~5 s for it, and shutdowns do not end
    /// early when cancelled; the process is exiting anyway, so it does not wait for them.
    /// (Not a task group: a group waits for its children.)
    static func bounded(_ limit: Duration, _ operation: @escaping @Sendable () async -> Void) async {
        let waiter = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let resume: @Sendable () -> Void = { waiter.withLock { $0.take() }?.resume() }
        await withCheckedContinuation { continuation in
            waiter.withLock { $0 = continuation }
            Task {
                await operation(); resume()
            }
            Task {
                try? await Task.sleep(for: limit); resume()
            }
        }
    }

    static func serverConfiguration(_ configuration: BrokerConfiguration, inheritedDescriptor: Int32?) throws -> UnixServerConfiguration {
        var server = UnixServerConfiguration()
        server.inheritedDescriptor = inheritedDescriptor
        server.socketPath = configuration.socket.path
        server.socketMode = configuration.socket.mode
        // An inherited socket already has the mode and group the .socket unit gave it.
        if inheritedDescriptor == nil {
            server.socketGroup = try configuration.socket.group.map(resolveGroup)
        }
        server.limits.maxConnections = configuration.limits.maxConnections
        server.limits.maxConnectionsPerUID = configuration.limits.maxConnectionsPerUID
        server.limits.maxConnectionsPerPod = configuration.limits.maxConnectionsPerPod
        server.limits.idleTimeout = .seconds(configuration.limits.idleTimeoutSeconds)
        server.eventLoopThreads = configuration.limits.eventLoopThreads
        if configuration.kubernetes?.callerEnvironment == true { server.attestedEnvironment = PodIdentities.environmentNames }
        return server
    }

    /// The compatibility listeners (none unless configured or inherited as `compat`),
    /// and how to tell the broker where they listen once they do. A compat Unix socket
    /// takes the broker socket's settings but its path.
    static func compatServers(
        _ configuration: BrokerConfiguration, listener: UnixServerConfiguration, inheritedDescriptor: Int32?, broker: Broker,
        defaultIdentity: LiveValue<String?>, group: any EventLoopGroup, logger: Logger
    ) throws -> (servers: [any BrokerServer], publish: @Sendable () -> Void) {
        let settings = configuration.compat
        guard settings.isEnabled || inheritedDescriptor != nil else { return ([], {}) }
        let secret = try IdentityHeaderSecret.loadOrCreate(settings.identityHeaderFile)
        let endpoints = CompatEndpoints(broker: broker, settings: settings, defaultIdentity: defaultIdentity, identityHeader: secret)
        var unix = listener
        unix.inheritedDescriptor = nil
        var listeners: [ListenerConfiguration] = []
        if let inheritedDescriptor {
            unix.inheritedDescriptor = inheritedDescriptor  // TCP, usually: `BrokerServers.make` asks the socket
            listeners.append(.unix(unix))
        } else {
            if let address = settings.tcp { listeners.append(.tcp(TCPServerConfiguration(address: address, limits: listener.limits))) }
            if let path = settings.unixSocket {
                unix.socketPath = path
                listeners.append(.unix(unix))
            }
        }
        let configured = listeners
        let servers = configured.map {
            BrokerServers.make($0, responder: broker, service: endpoints, group: { group }, logger: logger.with("listener", "compat"))
        }
        let publish: @Sendable () -> Void = {
            var status = CompatStatus(identityHeader: secret)
            for (server, listener) in zip(servers, configured) {
                if let port = server.localPort {
                    let host: String
                    if case .tcp(let tcp) = listener, let address = tcp.address {
                        host = address.host.contains(":") ? "[\(address.host)]" : address.host
                    } else {
                        host = "127.0.0.1"
                    }
                    status.identityEndpoint = "http://\(host):\(port)\(settings.appServicePath)"
                    status.imdsAuthorityHost = "http://\(host):\(port)"
                } else if case .unix(let unix) = listener, unix.inheritedDescriptor == nil {
                    status.socket = unix.socketPath
                }
            }
            broker.setCompatStatus(status)
        }
        return (servers, publish)
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
