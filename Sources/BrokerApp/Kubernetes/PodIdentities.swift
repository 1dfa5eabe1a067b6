import AssertionSources
import BrokerServer
import FoundationEssentials
import Glibc
import Logging
import ServiceLifecycle
import Synchronization
import TokenBrokerProtocol
import TokenCache
import TokenExchange

/// Node mode's half of the broker: a caller inside a pod gets tokens obtained with its
/// own pod's projected service-account token, and no other.
///
/// Why a pod cannot have another pod's token: the pod is the caller's cgroup's (attested
/// by the kernel at connect), the assertion is the one found in *that* pod's projected
/// volume (`PodTokenRegistry`), and the cache key contains everything the token service
/// sees of that assertion (issuer, subject, audience) and everything that changes the
/// token (exchange kind and parameters, scope). What a caller names — a client id, a
/// tenant, a volume — only selects among what its own assertion can buy; for Entra the
/// token service decides, issuing a token for a client id only if that app's federated
/// credential trusts this issuer and subject. Pods whose assertions agree share one key,
/// so replicas of a service account share one token per scope.
final class PodIdentities: Service, Sendable {
    let settings: KubernetesSettings
    let registry: PodTokenRegistry
    private let cache: TokenCache<ContinuousClock>
    private let makeExchanger: @Sendable (ExchangeConfiguration, ServiceAccount) throws -> any TokenExchanger
    private let logger: Logger
    /// The cache identities made for service accounts, by key.
    private let registered = Mutex<[String: Registration]>([:])

    /// One cache identity of a service account.
    struct Registration: Sendable {
        var subject: AssertionSubject
        var account: ServiceAccount
        var clientId: String?
        /// When its last pod left the node (nil while it has pods).
        var podlessSince: ContinuousClock.Instant?
    }

    /// What a pod caller's request resolves to.
    struct Resolution: Sendable {
        var key: TokenKey
        var account: ServiceAccount
        var clientId: String?
    }

    /// How a pod caller's request ends.
    enum Outcome {
        /// Served from this key.
        case resolved(Resolution)
        /// Refused, with what to tell the caller.
        case refused(WireError)
    }

    init(
        settings: KubernetesSettings, registry: PodTokenRegistry, cache: TokenCache<ContinuousClock>, logger: Logger,
        makeExchanger: @escaping @Sendable (ExchangeConfiguration, ServiceAccount) throws -> any TokenExchanger
    ) {
        self.settings = settings
        self.registry = registry
        self.cache = cache
        self.logger = logger
        self.makeExchanger = makeExchanger
    }

    /// The environment variables node mode reads from callers (`callerEnvironment`).
    static let environmentNames = ["AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AWS_ROLE_ARN"]

    // MARK: Resolution

    /// The key for a token request of a caller in pod `podUID`; `scope` is the scope asked
    /// for (nil: AWS credentials).
    func resolve(_ request: BrokerRequest, peer: PeerCredentials, podUID: String, scope: String?) -> Outcome {
        guard let tokens = registry.tokens(ofPod: podUID), !tokens.isEmpty else {
            let known = registry.tokens(ofPod: podUID) != nil
            return .refused(
                WireError(
                    code: known ? .assertionUnavailable : .forbidden,
                    message: known
                        ? "pod \(podUID) has no projected service-account token with audience \(settings.audience) (add one: docs/kubernetes.md)"
                        : "pod \(podUID) is not on this node (deleted, or not started by this node's kubelet)",
                    retryable: known))
        }
        let token: PodToken
        switch choose(from: tokens, volume: request.volume, podUID: podUID) {
        case .success(let chosen): token = chosen
        case .failure(let error): return .refused(error)
        }
        let exchange: ExchangeConfiguration
        switch exchangeFor(token.account, request: request, peer: peer, scope: scope) {
        case .success(let found): exchange = found
        case .failure(let error): return .refused(error)
        }
        let scopeText = exchange.implicitScope?.value ?? scope ?? ""
        guard !scopeText.isEmpty else {
            return .refused(WireError(code: .badRequest, message: "op 'token' needs 'scope' (or IMDS-style 'resource')"))
        }
        let identity: String
        do {
            identity = try register(exchange, for: token)
        } catch {
            return .refused(WireError(code: .badRequest, message: "cannot exchange for service account \(token.account): \(error)"))
        }
        var clientId: String?
        if case .entra(let entra) = exchange { clientId = entra.clientId }
        return .resolved(Resolution(key: TokenKey(identity: identity, scope: Scope(scopeText)), account: token.account, clientId: clientId))
    }

    /// The pod's token the request means: its only one, or the one `volume` names.
    private func choose(from tokens: [PodToken], volume: String?, podUID: String) -> Result<PodToken, WireError> {
        guard let volume else {
            if tokens.count == 1 { return .success(tokens[0]) }
            return .failure(
                WireError(
                    code: .identityRequired,
                    message:
                        "pod \(podUID) has \(tokens.count) projected service-account tokens (\(tokens.map(\.location).joined(separator: ", "))); name one with 'volume'"
                ))
        }
        let matches = tokens.filter { $0.location == volume || $0.volume == volume }
        guard matches.count == 1 else {
            return .failure(
                WireError(
                    code: matches.isEmpty ? .unknownIdentity : .identityRequired,
                    message:
                        "volume '\(volume.prefix(128))' names \(matches.isEmpty ? "none" : "several") of this pod's tokens (\(tokens.map(\.location).joined(separator: ", ")))"
                ))
        }
        return .success(matches[0])
    }

    /// The configured exchange for `account`, else the Entra app the caller names (in the
    /// request, or with `callerEnvironment` in its environment), else AWS by `AWS_ROLE_ARN`.
    private func exchangeFor(
        _ account: ServiceAccount, request: BrokerRequest, peer: PeerCredentials, scope: String?
    ) -> Result<ExchangeConfiguration, WireError> {
        if let rule = settings.serviceAccounts.first(where: { $0.matches(account) }) {
            if let asked = request.clientId, case .entra(let entra) = rule.exchange, asked.lowercased() != entra.clientId.lowercased() {
                return .failure(
                    WireError(
                        code: .forbidden,
                        message:
                            "service account \(account) is mapped to client id \(entra.clientId) by kubernetes.serviceAccounts; leave out 'clientId'")
                )
            }
            return .success(rule.exchange)
        }
        let environment = settings.callerEnvironment ? peer.environment ?? [:] : [:]
        if scope == nil, let role = environment["AWS_ROLE_ARN"] {
            do {
                return .success(.awsSts(try AWSSTSConfiguration(roleArn: role)))
            } catch {
                return .failure(WireError(code: .badRequest, message: "AWS_ROLE_ARN in the caller's environment: \(error)"))
            }
        }
        guard let clientId = request.clientId ?? environment["AZURE_CLIENT_ID"] else {
            return .failure(
                WireError(
                    code: .badRequest,
                    message: "no exchange for service account \(account): name the Entra app with 'clientId'"
                        + (settings.callerEnvironment ? " (the caller has no AZURE_CLIENT_ID)" : " (or set kubernetes.callerEnvironment)")
                        + ", or map the account in kubernetes.serviceAccounts"))
        }
        // Entra's client ids are GUIDs: anything else would only make one more cache identity.
        guard Self.isGUID(clientId) else {
            let shown = JWTClaims.shown(String(clientId.prefix(64)))
            return .failure(WireError(code: .badRequest, message: "client id '\(shown)' is not an Entra app's client id (a GUID)"))
        }
        guard let tenant = request.tenantId ?? environment["AZURE_TENANT_ID"] ?? settings.tenantId else {
            return .failure(WireError(code: .badRequest, message: "no Entra tenant: name it with 'tenantId', or set kubernetes.tenantId"))
        }
        do {
            return .success(.entra(try EntraConfiguration(tenantId: tenant, clientId: clientId, authorityHost: settings.authorityHost)))
        } catch {
            return .failure(WireError(code: .badRequest, message: "\(error.message)"))
        }
    }

    /// Distinct exchanges (client ids, tenants) one service account may use on this node: each
    /// is a cache identity kept while the account's pods live, and a pod names them.
    static let exchangesPerAccount = 32

    /// The cache identity of `exchange` with `token`'s assertion, registered on first use.
    private func register(_ exchange: ExchangeConfiguration, for token: PodToken) throws -> String {
        let identity = Self.cacheIdentity(exchange, subject: token.subject, account: token.account)
        try registered.withLock { table in
            if table[identity] != nil { return }
            guard table.values.count(where: { $0.account == token.account }) < Self.exchangesPerAccount else {
                throw TooManyExchanges(account: token.account)
            }
            let source = ServiceAccountAssertionSource(registry: registry, subject: token.subject, account: token.account)
            cache.register(identity: identity, fetcher: AssertionExchange(source: source, exchanger: try makeExchanger(exchange, token.account)))
            var clientId: String?
            if case .entra(let entra) = exchange { clientId = entra.clientId }
            table[identity] = Registration(subject: token.subject, account: token.account, clientId: clientId)
            logger.info(
                "service account served",
                metadata: [
                    "kubernetes.service_account": "\(token.account)", "token.identity": "\(identity)", "exchange.kind": "\(exchange.kind)",
                ])
        }
        return identity
    }

    /// `k8s:NS/NAME/` and 128 bits of SHA-256 over everything that changes the token: the
    /// assertion's issuer, subject and audience and the exchange with all its parameters.
    static func cacheIdentity(_ exchange: ExchangeConfiguration, subject: AssertionSubject, account: ServiceAccount) -> String {
        let material = [subject.issuer, subject.subject, subject.audience, exchange.kind, String(reflecting: exchange)].joined(separator: "\u{0}")
        let digest = SHA256Digest.hash(material.utf8).prefix(16).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        return "k8s:\(account)/\(digest)"
    }

    /// A service account that already uses `exchangesPerAccount` distinct exchanges.
    struct TooManyExchanges: Error, CustomStringConvertible {
        var account: ServiceAccount
        var description: String {
            "it already uses \(PodIdentities.exchangesPerAccount) distinct exchanges (client ids, tenants) on this node; name one of those"
        }
    }

    /// Whether `text` is a GUID (`8-4-4-4-12` hexadecimal digits).
    static func isGUID(_ text: String) -> Bool {
        let groups = text.split(separator: "-", omittingEmptySubsequences: false)
        return groups.map(\.count) == [8, 4, 4, 4, 12] && groups.allSatisfy { $0.allSatisfy { $0.isASCII && $0.isHexDigit } }
    }

    /// Whether a cache identity is one of a service account's (made here).
    static func isPodKey(_ identity: String) -> Bool { identity.hasPrefix("k8s:") }

    /// The service account and client id behind a cache identity this made.
    func registration(of identity: String) -> Registration? {
        guard Self.isPodKey(identity) else { return nil }
        return registered.withLock { $0[identity] }
    }

    /// Cached tokens per service account served (for `/metrics`).
    func cachedTokensByAccount() -> [ServiceAccount: Int] {
        let all = registered.withLock { $0.map { ($0.key, $0.value.account) } }
        var counts: [ServiceAccount: Int] = [:]
        for (identity, account) in all {
            counts[account, default: 0] += cache.snapshot(identity: identity).filter { $0.expiresIn != nil }.count
        }
        return counts
    }

    // MARK: Status

    /// What the caller's pod has, for `status`.
    func status(podUID: String) -> PodStatus? {
        guard let tokens = registry.tokens(ofPod: podUID) else { return nil }
        let how = settings.serviceAccounts.isEmpty ? (settings.callerEnvironment ? "environment" : "clientId") : "configured"
        return PodStatus(uid: podUID, tokens: tokens.map(\.location), serviceAccounts: tokens.map(\.account.description), exchange: how)
    }

    // MARK: Forgetting

    /// Every 5 s: a service account whose last pod left `forgetAfterSeconds` ago loses its
    /// cached tokens.
    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(5))
                self.forgetPodless(at: .now)
            }
        }
    }

    func forgetPodless(at instant: ContinuousClock.Instant) {
        let forget = registered.withLock { table -> [String] in
            var gone: [String] = []
            for (identity, var registration) in table {
                if registry.hasPods(for: registration.subject) {
                    registration.podlessSince = nil
                } else if let since = registration.podlessSince {
                    if since.duration(to: instant) >= .seconds(settings.forgetAfterSeconds) { gone.append(identity) }
                } else {
                    registration.podlessSince = instant
                }
                table[identity] = registration
            }
            for identity in gone { table[identity] = nil }
            return gone
        }
        for identity in forget {
            cache.remove(identity: identity)
            logger.info("service account forgotten: no pod of it is left on the node", metadata: ["token.identity": "\(identity)"])
        }
    }
}
