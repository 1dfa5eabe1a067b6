// What `op: status` answers: the identities, sinks, pod and compatibility endpoints a caller may see.

/// The broker's state, as returned by the `status` op and `/v1/status`.
public struct BrokerStatus: Codable, Sendable, Equatable {
    /// Protocol version.
    public var version: Int
    /// Whether the broker is ready (see docs/operations.md).
    public var ready: Bool
    /// The identities the caller may use (others are not listed).
    public var identities: [IdentityStatus]
    /// Where the compatibility endpoints listen, when they are on.
    public var compat: CompatStatus?
    /// Node mode: the caller's own pod, when it is in one the broker knows.
    public var pod: PodStatus?
    /// The token files (`sinks:`) of the identities the caller may use; nil when there are none.
    public var sinks: [SinkStatus]?

    /// Creates a status.
    public init(
        version: Int = WireProtocol.version, ready: Bool, identities: [IdentityStatus], compat: CompatStatus? = nil, pod: PodStatus? = nil,
        sinks: [SinkStatus]? = nil
    ) {
        self.version = version
        self.ready = ready
        self.identities = identities
        self.compat = compat
        self.pod = pod
        self.sinks = sinks
    }
}

/// Node mode: what the broker knows of the caller's pod and what it may ask for.
public struct PodStatus: Codable, Sendable, Equatable {
    /// The pod's UID.
    public var uid: String
    /// The projected service-account tokens found for it, `VOLUME/FILE`.
    public var tokens: [String]
    /// Their service accounts, `NS/NAME`, in the same order.
    public var serviceAccounts: [String]
    /// How the exchange is chosen: `configured` (kubernetes.serviceAccounts), `clientId`
    /// (the caller names an Entra app), `environment` (the caller's AZURE_CLIENT_ID).
    public var exchange: String?

    /// Creates a pod status.
    public init(uid: String, tokens: [String], serviceAccounts: [String], exchange: String? = nil) {
        self.uid = uid
        self.tokens = tokens
        self.serviceAccounts = serviceAccounts
        self.exchange = exchange
    }
}

/// The compatibility endpoints as a program's environment needs them (`tokenbroker env`).
public struct CompatStatus: Codable, Sendable, Equatable {
    /// `IDENTITY_ENDPOINT`: the App Service endpoint URL on loopback TCP.
    public var identityEndpoint: String?
    /// `AZURE_POD_IDENTITY_AUTHORITY_HOST`: the IMDS base URL on loopback TCP.
    public var imdsAuthorityHost: String?
    /// The compatibility Unix socket, if one is configured.
    public var socket: String?
    /// `IDENTITY_HEADER`: only for callers that may use some identity.
    public var identityHeader: String?

    /// Creates a compat status.
    public init(identityEndpoint: String? = nil, imdsAuthorityHost: String? = nil, socket: String? = nil, identityHeader: String? = nil) {
        self.identityEndpoint = identityEndpoint
        self.imdsAuthorityHost = imdsAuthorityHost
        self.socket = socket
        self.identityHeader = identityHeader
    }
}

/// One token file the broker keeps fresh (`sinks:`).
public struct SinkStatus: Codable, Sendable, Equatable {
    /// The file.
    public var path: String
    /// Whose token it holds.
    public var identity: String
    /// For which scope (an AWS identity's role).
    public var scope: String
    /// `token`, `json`, `header`, `aws-credentials` or `env`.
    public var format: String
    /// When the file was last written, seconds since the epoch; nil before the first write.
    public var lastWrite: Int64?
    /// When the token in the file expires, seconds since the epoch; nil when there is no file.
    public var expiresOn: Int64?
    /// The last problem, until the next successful write (its code: `symlink`, `unsafe_directory`,
    /// `token_unavailable`, `token_expired`, `rotate_failed`, … — docs/configuration.md).
    public var lastError: WireError?

    /// Creates a sink status.
    public init(
        path: String, identity: String, scope: String, format: String, lastWrite: Int64? = nil, expiresOn: Int64? = nil, lastError: WireError? = nil
    ) {
        self.path = path
        self.identity = identity
        self.scope = scope
        self.format = format
        self.lastWrite = lastWrite
        self.expiresOn = expiresOn
        self.lastError = lastError
    }
}

/// One identity's state.
public struct IdentityStatus: Codable, Sendable, Equatable {
    /// The identity's name.
    public var name: String
    /// `entra`, …
    public var exchange: String
    /// Where its assertion comes from.
    public var source: String
    /// The application (client) id it exchanges for, when it has one.
    public var clientId: String?
    /// Scopes with a cached token.
    public var cachedScopes: [String]
    /// The last exchange error, if the last exchange failed.
    public var lastError: WireError?

    /// Creates an identity status.
    public init(name: String, exchange: String, source: String, clientId: String? = nil, cachedScopes: [String], lastError: WireError? = nil) {
        self.name = name
        self.exchange = exchange
        self.source = source
        self.clientId = clientId
        self.cachedScopes = cachedScopes
        self.lastError = lastError
    }
}
