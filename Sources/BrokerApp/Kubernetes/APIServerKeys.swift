import Dispatch
import FoundationEssentials
import Logging
import NIOCore
import PlainJSON
import Synchronization
import TokenExchange
import UpstreamHTTP

/// The cluster's service-account keys from the API server's `/openid/v1/jwks`
/// (`serviceAccountKeys: { apiServer }`), asked with the broker's own service-account token.
///
/// Its own HTTPS client: the API server's certificate is checked against `caFile` alone, not
/// the system's roots nor `upstream.caFile`, and the token services' client never sees it.
struct APIServerKeys: Sendable {
    let settings: APIServerKeySettings
    /// The document's URL, `settings.url`'s or in-cluster's.
    let jwksURL: String
    private let transport: AsyncHTTPTransport

    /// A client for the keys at `jwksURL`; throws naming `caFile` when it cannot be used.
    init(_ settings: APIServerKeySettings, jwksURL: String, group: any EventLoopGroup, logger: Logger) throws(ServiceAccountKeys.KeySetError) {
        // Short: a fetch after the start blocks the pod watcher's thread, so a hung API server
        // holds new pods back at most ~10 s per 30 s (two attempts of 5 s).
        var configuration = UpstreamHTTPConfiguration(
            connectTimeout: .seconds(5), requestTimeout: .seconds(5), maxResponseBytes: 256 * 1024, retries: 1, additionalCAFiles: [settings.caFile])
        configuration.trustSystemRoots = false
        do {
            transport = try AsyncHTTPTransport(configuration: configuration, logger: logger, eventLoopGroup: group)
        } catch {
            throw ServiceAccountKeys.KeySetError("caFile \(settings.caFile): \(error)")
        }
        self.settings = settings
        self.jwksURL = jwksURL
    }

    /// Closes the client's connections.
    func shutdown() async {
        try? await transport.shutdown()
    }

    /// One `GET /openid/v1/jwks`: the keys, or why not (no token nor body is ever in the message).
    func fetch() async throws(ServiceAccountKeys.KeySetError) -> ServiceAccountKeys {
        // Read for every request: the kubelet replaces the token long before it expires.
        guard let bytes = FileManager.default.contents(atPath: settings.tokenFile),
            case let token = String(decoding: bytes, as: UTF8.self).trimmed(), !token.isEmpty
        else {
            throw ServiceAccountKeys.KeySetError("cannot read the broker's service-account token \(settings.tokenFile) (tokenFile)")
        }
        let request = UpstreamRequest(
            method: "GET", url: jwksURL, headers: [HeaderField("Authorization", "Bearer \(token)"), HeaderField("Accept", "application/json")],
            body: [])
        let response: UpstreamResponse
        do {
            response = try await transport.send(request)
        } catch {
            // The transport words its failures for token services; what follows is the reason.
            let prefix = TokenExchangeError.transportPrefix
            let reason = error.message.hasPrefix(prefix) ? String(error.message.dropFirst(prefix.count)) : error.message
            throw ServiceAccountKeys.KeySetError("cannot fetch \(jwksURL): \(reason)")
        }
        guard response.status == 200 else {
            throw ServiceAccountKeys.KeySetError("\(jwksURL) answered HTTP \(response.status)\(Self.hint(status: response.status))")
        }
        do {
            return try ServiceAccountKeys(jwks: response.body)
        } catch {
            throw ServiceAccountKeys.KeySetError("\(jwksURL) \(error.message)")
        }
    }

    /// `fetch()` for a thread that may block (the pod watcher's), never a task's.
    func fetchBlocking() throws(ServiceAccountKeys.KeySetError) -> ServiceAccountKeys {
        let outcome = Mutex<Result<ServiceAccountKeys, ServiceAccountKeys.KeySetError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            let result: Result<ServiceAccountKeys, ServiceAccountKeys.KeySetError>
            do throws(ServiceAccountKeys.KeySetError) {
                result = .success(try await fetch())
            } catch {
                result = .failure(error)
            }
            outcome.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return try outcome.withLock { $0! }.get()
    }

    private static func hint(status: Int) -> String {
        switch status {
        case 401: " (the API server did not accept the token in tokenFile)"
        case 403:
            " (the broker's service account may not read the issuer's keys: Kubernetes grants it to every service account through the ClusterRoleBinding system:service-account-issuer-discovery)"
        case 404: " (the API server serves no service-account issuer discovery: Kubernetes 1.21 or later serves it)"
        default: ""
        }
    }
}

extension ClusterKeys {
    /// Node mode's `kubernetes.serviceAccountKeys`, loaded: keys that cannot be had stop the
    /// start (there would be no way to tell a pod's token), naming where and why. With
    /// `apiServer`, also the client kept for fetching them again, to shut down at exit.
    static func load(
        _ settings: KubernetesSettings, environment: [String: String], group: any EventLoopGroup, logger: Logger
    ) async throws(ConfigurationError) -> (ClusterKeys, APIServerKeys?) {
        let invalid = { (error: ServiceAccountKeys.KeySetError) in
            ConfigurationError(
                origin: settings.serviceAccountKeys.origin, issues: [.init(path: "kubernetes.serviceAccountKeys", message: error.message)])
        }
        switch settings.serviceAccountKeys {
        case .file(let path):
            do {
                return (try ClusterKeys.file(path, logger: logger), nil)
            } catch {
                throw invalid(error)
            }
        case .apiServer(let server):
            guard let url = server.jwksURL(environment: environment) else {
                throw ConfigurationError(
                    origin: settings.serviceAccountKeys.origin,
                    issues: [
                        .init(
                            path: "kubernetes.serviceAccountKeys.apiServer",
                            message:
                                "in-cluster needs KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, which Kubernetes sets in every container; outside a pod, name the API server: https://HOST:PORT"
                        )
                    ])
            }
            let client: APIServerKeys
            do {
                client = try APIServerKeys(server, jwksURL: url, group: group, logger: logger)
            } catch {
                throw invalid(error)
            }
            do {
                let keys = try await client.fetch()
                logger.info("fetched the cluster's service-account keys", metadata: ["keys.origin": "\(url)", "keys": "\(keys.keys.count)"])
                let reload: ClusterKeys.Load = { () throws(ServiceAccountKeys.KeySetError) in try client.fetchBlocking() }
                return (ClusterKeys(source: settings.serviceAccountKeys, keys: keys, logger: logger, load: reload), client)
            } catch {
                await client.shutdown()
                throw invalid(error)
            }
        }
    }
}
