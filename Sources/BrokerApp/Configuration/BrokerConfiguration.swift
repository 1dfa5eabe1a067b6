public import TokenExchange

/// The whole daemon configuration, as read from `/etc/tokenbroker/config.yaml`
/// and the environment. docs/configuration.md documents every field.
public struct BrokerConfiguration: Sendable, Equatable {
    /// The Unix socket.
    public var socket = SocketSettings()
    /// Connection limits.
    public var limits = LimitSettings()
    /// The token cache.
    public var cache = CacheSettings()
    /// Talking to token services.
    public var upstream = UpstreamSettings()
    /// Logging.
    public var log = LogSettings()
    /// When to tell systemd `READY=1`.
    public var readiness = ReadinessSettings()
    /// The App Service / IMDS compatible endpoints (off by default).
    public var compat = CompatSettings()
    /// `kubernetes:` — node mode; nil (the default) when absent.
    public var kubernetes: KubernetesSettings?
    /// The identities this broker serves, in file order.
    public var identities: [IdentityConfiguration] = []
    /// `sinks`: files kept holding a fresh token, in file order (default none).
    public var sinks: [SinkSettings] = []
    /// `allowNoIdentities`, default false: a reload that would leave no identity is refused
    /// (an emptied or truncated file must not turn every caller away) unless this says the
    /// file serves none on purpose.
    public var allowNoIdentities = false

    /// An empty configuration with defaults.
    public init() {}

    /// `socket:`
    public struct SocketSettings: Sendable, Equatable {
        /// `path`, default `/run/tokenbroker/broker.sock`.
        public var path = "/run/tokenbroker/broker.sock"
        /// `mode`, octal, default `0660`.
        public var mode: UInt32 = 0o660
        /// `group`, a name or number; default: the daemon's group.
        public var group: String? = nil
    }

    /// `limits:`
    public struct LimitSettings: Sendable, Equatable {
        /// `maxConnections`, default 1024.
        public var maxConnections = 1024
        /// `idleTimeoutSeconds`, default 60.
        public var idleTimeoutSeconds = 60
        /// `maxConnectionsPerUID`, default 128: one uid's connections beyond it are closed at accept.
        public var maxConnectionsPerUID = 128
        /// `maxConnectionsPerPod`, default 128: one Kubernetes pod's connections beyond it are
        /// closed at accept (pods' relays usually share one uid).
        public var maxConnectionsPerPod = 128
        /// `requestsPerSecondPerUID`, default 1000: sustained requests per second of one uid;
        /// 0 turns the rate limit off.
        public var requestsPerSecondPerUID = 1000
        /// `requestBurstPerUID`, default 2000: requests one uid may send at once above the rate.
        public var requestBurstPerUID = 2000
        /// `eventLoopThreads`: threads serving the Unix socket (calls to token services and
        /// the loopback compatibility listeners have one thread of their own). One by
        /// default: it answers well over 100,000 cached tokens a second with a sub-millisecond
        /// p99, without the contention and tail latency of several loops on a busy node.
        public var eventLoopThreads = 1
    }

    /// `cache:`
    public struct CacheSettings: Sendable, Equatable {
        /// `maxScopesPerIdentity`, default 64.
        public var maxScopesPerIdentity = 64
        /// `minValiditySeconds`, default 300: validity a served token has at least.
        public var minValiditySeconds = 300
        /// `minRefreshIntervalSeconds`, default 30: a caller asking for more validity than
        /// the cached token has triggers at most one refresh per scope in this interval.
        public var minRefreshIntervalSeconds = 30
        /// `maxConcurrentExchanges`, default 8: exchanges of one identity in flight at once.
        public var maxConcurrentExchanges = 8
    }

    /// `upstream:`
    public struct UpstreamSettings: Sendable, Equatable {
        /// `caFile`: an extra PEM bundle to trust besides the system roots.
        public var caFile: String? = nil
        /// `timeoutSeconds`, default 15: per request to a token service.
        public var timeoutSeconds = 15
        /// `allowInsecureLoopback`, default false: allow plain `http://` to 127.0.0.0/8 and
        /// ::1 (local test services such as moto_server); https is required otherwise.
        public var allowInsecureLoopback = false
    }

    /// `readiness:` — `listening` (default) or `token`, or `{ mode, timeoutSeconds }`.
    public struct ReadinessSettings: Sendable, Equatable {
        /// What READY means.
        public enum Mode: String, Sendable, Equatable {
            /// The socket is bound and the configuration valid.
            case listening
            /// Also: every identity's `prefetch` scopes hold a token (bounded by `timeoutSeconds`).
            case token
        }
        /// `mode`, default `listening`.
        public var mode = Mode.listening
        /// `timeoutSeconds`, default 60: with `token`, READY is sent after this long anyway,
        /// with STATUS saying which tokens are missing.
        public var timeoutSeconds = 60
    }

    /// `log:`
    public struct LogSettings: Sendable, Equatable {
        /// `level`: trace, debug, info (default), notice, warning, error, critical.
        public var level = "info"
    }
}

/// One identity: where its assertion comes from, where it is exchanged, who may use it.
public struct IdentityConfiguration: Sendable, Equatable {
    /// `name`: what callers ask for (`identity` in requests).
    public var name: String
    /// `source`: where the assertion comes from.
    public var source: AssertionSourceConfiguration
    /// `exchange`: where the assertion is traded.
    public var exchange: ExchangeConfiguration
    /// `allow`: who may get its tokens. Empty: root and the daemon's own user only.
    public var allow: [AllowRule]
    /// `prefetch`: scopes fetched at start and kept fresh.
    public var prefetch: [Scope]
    /// `aliases`: other ids the compatibility endpoints know it by.
    public var aliases: IdentityAliases

    /// Creates an identity.
    public init(
        name: String, source: AssertionSourceConfiguration, exchange: ExchangeConfiguration, allow: [AllowRule] = [], prefetch: [Scope] = [],
        aliases: IdentityAliases = IdentityAliases()
    ) {
        self.name = name
        self.source = source
        self.exchange = exchange
        self.allow = allow
        self.prefetch = prefetch
        self.aliases = aliases
    }
}

/// `source:` of an identity.
public enum AssertionSourceConfiguration: Sendable, Equatable {
    /// `{ file: PATH }`: a projected service-account token.
    case file(path: String)
    /// `{ exec: { command, audience, timeoutSeconds, env } }`: a plugin prints it (docs/plugins.md).
    case exec(ExecSettings, audience: String?)
    /// `{ githubActions: { audience } }`: the job's OIDC token, from the URL and bearer token
    /// the Actions runner puts in the environment.
    case githubActions(audience: String?, requestURL: String, requestToken: String)
    /// `{ gcpMetadata: { audience, baseURL } }`: the GCE/GKE metadata server's identity token.
    case gcpMetadata(audience: String, baseURL: String)

    /// A short description for status and logs (never the request token).
    public var summary: String {
        switch self {
        case .file(let path): "file:\(path)"
        case .exec(let settings, _): "exec:\(settings.command.first ?? "")"
        case .githubActions: "github-actions"
        case .gcpMetadata(_, let baseURL): "gcp-metadata:\(baseURL)"
        }
    }
}

/// How to run an exec plugin (source or exchange).
public struct ExecSettings: Sendable, Equatable {
    /// `command`: the executable's absolute path and its arguments; no shell.
    public var command: [String]
    /// `env`: variables added to the plugin's otherwise empty environment (PATH aside).
    public var environment: [String: String] = [:]
    /// `timeoutSeconds`, default 10.
    public var timeoutSeconds = 10

    /// Creates settings.
    public init(command: [String], environment: [String: String] = [:], timeoutSeconds: Int = 10) {
        self.command = command
        self.environment = environment
        self.timeoutSeconds = timeoutSeconds
    }
}

/// `exchange:` of an identity.
public enum ExchangeConfiguration: Sendable, Equatable {
    /// `{ entra: { tenantId, clientId, authorityHost } }`.
    case entra(EntraConfiguration)
    /// `{ rfc8693: { tokenEndpoint, audience, resource, subjectTokenType, requestedTokenType, clientId, clientSecretFile } }`.
    case rfc8693(RFC8693Configuration)
    /// `{ awsSts: { roleArn, sessionName, durationSeconds, region, endpoint } }`: AWS credentials.
    case awsSts(AWSSTSConfiguration)
    /// `{ exec: { command, timeoutSeconds, env } }`: a plugin trades the assertion (docs/plugins.md).
    case exec(ExecSettings)
    /// `{ none: {} }`: the assertion itself is the token, for audiences that accept it directly.
    case none

    /// The scope an identity's tokens are cached under when callers name none: AWS
    /// credentials are for a role, not a scope.
    public var implicitScope: Scope? {
        if case .awsSts(let aws) = self { return Scope(aws.roleArn) }
        return nil
    }

    /// What the identity's exchange gives: AWS credentials (`awsSts`) or access tokens
    /// (everything else, plugins included). A request that names no identity chooses
    /// only among identities that give what it asks for.
    public var gives: CredentialKind { if case .awsSts = self { .awsCredentials } else { .accessToken } }

    /// The kind, for status.
    public var kind: String {
        switch self {
        case .entra: "entra"
        case .rfc8693: "rfc8693"
        case .awsSts: "aws-sts"
        case .exec: "exec"
        case .none: "none"
        }
    }
}

/// What a token request asks for, and what an identity gives.
public enum CredentialKind: Sendable, Equatable {
    /// A bearer token for a scope (Entra, RFC 8693, plugins, `none`).
    case accessToken
    /// AWS credentials for a role (`awsSts`).
    case awsCredentials

    /// How messages name it.
    public var phrase: String { self == .accessToken ? "access tokens" : "AWS credentials" }
}

/// One entry of an identity's `allow:` list.
public enum AllowRule: Sendable, Equatable {
    /// `{ uid: N }`
    case uid(UInt32)
    /// `{ gid: N }`: primary or supplementary group.
    case gid(UInt32)
    /// `{ any: true }`: every local process that can reach the socket.
    case any
    /// `{ exe: PATH }`: the caller's executable is the file at PATH (symlinks in the
    /// configured path resolved at load; compared by device and inode, not by name).
    case exe(String)
    /// `{ all: [ RULE, … ] }`: every listed rule matches (e.g. a uid *and* an executable).
    case all([AllowRule])
    /// `{ cgroup: GLOB }`: the caller's cgroup path, matched with fnmatch(3) and `FNM_PATHNAME`.
    case cgroup(String)
    /// `{ systemdUnit: NAME }`: the systemd unit of the caller's cgroup (`foo.service`), or
    /// `user@UID.service/NAME` for a unit of that user's manager.
    case systemdUnit(String)
    /// `{ podUID: UID }`: the Kubernetes pod of the caller's cgroup, lowercase with dashes.
    case podUID(String)
}
