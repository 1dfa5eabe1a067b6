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
    /// `serviceAccountKeys` (required): the JWKS file of the cluster's service-account issuer
    /// (`kubectl get --raw /openid/v1/jwks`). A pod's token counts only signed by one of them.
    public var serviceAccountKeys = ""

    /// Node mode with the defaults.
    public init() {}
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
