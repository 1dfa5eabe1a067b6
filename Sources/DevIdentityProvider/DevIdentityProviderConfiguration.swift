/// How the development identity provider is laid out and how strict it is.
///
/// The defaults describe one workload (`system:serviceaccount:default:workload`) federated
/// with one app registration in one tenant, with Kubernetes' and Entra's usual lifetimes.
public struct DevIdentityProviderConfiguration: Sendable {
    /// Directory for `ca.pem`, `provider.json` and `tokens/`; created with mode 0700. Required.
    public var stateDirectory: String
    /// Address both HTTPS servers bind to. Default `127.0.0.1`.
    public var host: String = "127.0.0.1"
    /// Port of the OIDC issuer; 0 (the default) picks a free port.
    public var issuerPort: Int = 0
    /// Port of the Entra emulator; 0 (the default) picks a free port.
    public var entraPort: Int = 0
    /// The only tenant the emulator knows. Default `72f988bf-0000-4000-8000-00000000d0e1`.
    public var tenantId: String = "72f988bf-0000-4000-8000-00000000d0e1"
    /// The only app registration the emulator knows. Default `5e5c0a11-0000-4000-8000-00000000c1e7`.
    public var clientId: String = "5e5c0a11-0000-4000-8000-00000000c1e7"
    /// More app registrations federated with the same service account (user-assigned
    /// identities in tests of identity selection). Default none.
    public var extraClientIds: [String] = []
    /// Namespace of the service account the minted tokens name. Default `default`.
    public var serviceAccountNamespace = "default"
    /// Name of the service account the minted tokens name. Default `workload`.
    public var serviceAccountName = "workload"
    /// More federated credential subjects accepted for the app (exact, case-sensitive). Default none.
    public var extraSubjects: [String] = []
    /// App registrations with federated credentials of their own: client id → the subjects
    /// it trusts (and only those), like separate apps in a tenant. Each is also an app the
    /// emulator knows. Default none.
    public var appSubjects: [String: [String]] = [:]
    /// Lifetime of the projected service-account tokens. Default 1 h.
    public var assertionLifetime: Duration = .seconds(3600)
    /// How often the token file is rewritten; nil (the default) is 80 % of `assertionLifetime`, as kubelet does.
    public var rotationInterval: Duration? = nil
    /// Lifetime of the access tokens the emulator issues. Default 1 h.
    public var accessTokenLifetime: Duration = .seconds(3600)
    /// Delay injected before every token answer, to exercise timeouts and single flight. Default zero.
    public var latency: Duration = .zero
    /// The `aud` a subject token must carry for the RFC 8693 endpoint (`/sts/token`) to accept
    /// it; the issuer also keeps a token with this audience in `tokens/sts-token`.
    /// Default `tokenbroker-dev-sts`.
    public var stsAudience = "tokenbroker-dev-sts"
    /// When set (with `stsClientSecret`), the RFC 8693 endpoint requires HTTP Basic client
    /// authentication with this id. Default nil: no client authentication.
    public var stsClientId: String? = nil
    /// The secret for `stsClientId`. Default nil.
    public var stsClientSecret: String? = nil

    /// A configuration with every default and the given state directory.
    public init(stateDirectory: String) {
        self.stateDirectory = stateDirectory
    }

    /// The subject of the configured service account, `system:serviceaccount:NS:SA`.
    var serviceAccountSubject: String {
        "system:serviceaccount:\(serviceAccountNamespace):\(serviceAccountName)"
    }

    /// The interval the rotation loop actually uses.
    var effectiveRotationInterval: Duration {
        rotationInterval ?? assertionLifetime * 0.8
    }
}

/// Where a started provider can be reached; also written to `provider.json` in the state directory.
public struct DevProviderEndpoints: Sendable, Codable, Equatable {
    /// Base URL of the OIDC issuer, `https://127.0.0.1:PORT`; the `iss` of minted tokens.
    public var issuerURL: String
    /// Base URL of the Entra emulator; its token endpoint is `{authorityHost}/{tenantId}/oauth2/v2.0/token`.
    public var authorityHost: String
    /// The tenant the emulator accepts.
    public var tenantId: String
    /// The client (application) id the emulator accepts.
    public var clientId: String
    /// PEM file of the generated CA that signed both servers' certificates: trust this.
    public var caFile: String
    /// The projected-token file, `stateDir/tokens/azure-identity-token`, rotated with the kubelet layout.
    public var tokenFile: String
    /// The audience minted tokens carry and the federated credential expects, `api://AzureADTokenExchange`.
    public var audience: String
    /// The RFC 8693 token exchange endpoint, `{authorityHost}/sts/token`.
    public var stsTokenEndpoint: String
    /// The audience the RFC 8693 endpoint requires of subject tokens, `tokenbroker-dev-sts` by default.
    public var stsAudience: String
    /// A projected-token file with `stsAudience` as its audience, `stateDir/tokens/sts-token`,
    /// rotated together with `tokenFile`: the subject token for the RFC 8693 endpoint.
    public var stsTokenFile: String

    /// Creates endpoints from their parts; the RFC 8693 ones default to what a provider at
    /// `authorityHost` with `tokenFile`'s directory serves.
    public init(
        issuerURL: String, authorityHost: String, tenantId: String, clientId: String,
        caFile: String, tokenFile: String, audience: String,
        stsTokenEndpoint: String? = nil, stsAudience: String = "tokenbroker-dev-sts", stsTokenFile: String? = nil
    ) {
        self.issuerURL = issuerURL
        self.authorityHost = authorityHost
        self.tenantId = tenantId
        self.clientId = clientId
        self.caFile = caFile
        self.tokenFile = tokenFile
        self.audience = audience
        self.stsTokenEndpoint = stsTokenEndpoint ?? authorityHost + "/sts/token"
        self.stsAudience = stsAudience
        let directory = tokenFile.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        self.stsTokenFile = stsTokenFile ?? directory + "/" + DevIssuer.stsTokenFileName
    }

    /// The Entra v2 token endpoint of the emulator for the configured tenant.
    public var tokenEndpoint: String { "\(authorityHost)/\(tenantId)/oauth2/v2.0/token" }
}
