import AssertionSources
import TokenExchange

/// `kubernetes:` — node mode: every pod on the node gets the tokens of its own service
/// account, found in the kubelet's pods directory (docs/kubernetes.md). Absent: off.
public struct KubernetesSettings: Sendable, Equatable {
    /// `podsDirectory`, default `/var/lib/kubelet/pods`.
    public var podsDirectory = "/var/lib/kubelet/pods"
    /// `audience`, default `api://AzureADTokenExchange`: a projected token counts only with it.
    public var audience = "api://AzureADTokenExchange"
    /// `callerEnvironment`, default false: read `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and
    /// `AWS_ROLE_ARN` from the caller's `/proc/PID/environ` (once per connection).
    public var callerEnvironment = false
    /// `tenantId`: the Entra tenant when the caller names none. Default none.
    public var tenantId: String?
    /// `authorityHost`, default the public cloud's.
    public var authorityHost = EntraConfiguration.publicCloudAuthorityHost
    /// `serviceAccounts`: exchanges by service account, first match wins. Default none.
    public var serviceAccounts: [ServiceAccountRule] = []
    /// `forgetAfterSeconds`, default 30: a service account's cached tokens are dropped
    /// this long after its last pod left the node.
    public var forgetAfterSeconds = 30
    /// `serviceAccountKeys` (required): where the cluster's service-account signing keys come
    /// from. A pod's token counts only signed by one of them.
    public var serviceAccountKeys = ServiceAccountKeySource.file("")

    /// Node mode with the defaults.
    public init() {}
}

/// `kubernetes.serviceAccountKeys`: the public keys of the cluster's service-account issuer, a
/// JWKS document as the API server serves it at `/openid/v1/jwks`.
public enum ServiceAccountKeySource: Sendable, Equatable {
    /// A JWKS file (`kubectl get --raw /openid/v1/jwks`, mounted from a ConfigMap): read at
    /// start and again when a token names a key it does not hold.
    case file(String)
    /// The API server's `/openid/v1/jwks`, fetched at start and again when a token names a
    /// key the broker does not hold: a cluster's key rotation needs no one's hand.
    case apiServer(APIServerKeySettings)

    /// The file's path or the document's URL, for messages.
    public var origin: String {
        switch self {
        case .file(let path): path
        case .apiServer(let settings):
            settings.url.map { $0 + APIServerKeySettings.jwksPath } ?? "the API server's \(APIServerKeySettings.jwksPath) (in-cluster)"
        }
    }
}

/// `serviceAccountKeys: { apiServer, caFile, tokenFile }`.
public struct APIServerKeySettings: Sendable, Equatable {
    /// The service account's files in every pod that mounts its token (the kubelet's defaults).
    public static let podCAFile = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    public static let podTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    /// Where the API server serves its service-account issuer's keys.
    public static let jwksPath = "/openid/v1/jwks"

    /// `apiServer`: `https://HOST[:PORT]`, no path; nil for `in-cluster`, the address Kubernetes
    /// puts in every container's environment, found at start (`check-config` runs anywhere).
    public var url: String?
    /// `caFile`: the only CA the API server's certificate is checked against (not the system's).
    public var caFile = Self.podCAFile
    /// `tokenFile`: the broker's own service-account token, sent as `Authorization: Bearer`
    /// and read again for every request (the kubelet rotates it). Any service account may
    /// read the keys: Kubernetes binds `system:service-account-issuer-discovery` to them all.
    public var tokenFile = Self.podTokenFile

    /// Settings for the API server at `url` (nil: in-cluster).
    public init(url: String?, caFile: String = Self.podCAFile, tokenFile: String = Self.podTokenFile) {
        self.url = url
        self.caFile = caFile
        self.tokenFile = tokenFile
    }

    /// The keys' document: at `url`, or in-cluster at `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`;
    /// nil when in-cluster and the environment does not say where.
    public func jwksURL(environment: [String: String]) -> String? {
        if let url { return url + Self.jwksPath }
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty, let port = environment["KUBERNETES_SERVICE_PORT"],
            !port.isEmpty, port.utf8.allSatisfy({ (0x30...0x39).contains($0) })
        else { return nil }
        return "https://\(host.contains(":") ? "[\(host)]" : host):\(port)" + Self.jwksPath
    }
}

/// One entry of `kubernetes.serviceAccounts`: `{ namespace, name, exchange }`.
public struct ServiceAccountRule: Sendable, Equatable {
    /// A namespace, or `*` for any.
    public var namespace: String
    /// A service account name, or `*` for any.
    public var name: String
    /// The exchange its pods' tokens are traded with.
    public var exchange: ExchangeConfiguration

    /// Whether the rule names `account`.
    func matches(_ account: ServiceAccount) -> Bool {
        (namespace == "*" || namespace == account.namespace) && (name == "*" || name == account.name)
    }
}
