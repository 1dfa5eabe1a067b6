import AssertionSources
import BrokerServer
import FoundationEssentials
import Glibc
import Logging
import Synchronization
import TokenBrokerProtocol
import TokenCache
import TokenExchange

/// The broker's answer to every protocol request: resolves the identity,
/// authorizes the caller, and serves from the cache.
final class Broker: BrokerResponder {
    /// One configured identity with its live parts. A class: the request path passes
    /// it around without copying (and retaining) the whole configuration.
    final class Identity: Sendable {
        let configuration: IdentityConfiguration
        let source: any ManagedAssertionSource
        let policy: AccessPolicy

        init(configuration: IdentityConfiguration, source: any ManagedAssertionSource, policy: AccessPolicy) {
            self.configuration = configuration
            self.source = source
            self.policy = policy
        }
    }

    private let cache: TokenCache<ContinuousClock>
    private let identities: Mutex<[String: Identity]>
    /// Changes with every `replaceIdentities`.
    private let identitiesGeneration = Atomic<UInt64>(0)
    /// Counts answered requests (metrics).
    let countRequest: @Sendable (_ op: String, _ outcome: String) -> Void
    /// `cache.minValiditySeconds`, for requests that name no minimum; a reload may change it.
    private let defaultMinimumValidity: Atomic<Int>
    private let logger: Logger
    /// Whether `logger` takes debug records, so each answer skips even the check; updated
    /// by `logLevelChanged()` when a reload changes `log.level`.
    private let logsEachAnswer: Atomic<Bool>
    /// The daemon's own uid: like root, it may read the configuration, so it is told which
    /// identity names do not exist.
    private let daemonUID = getuid()
    /// Where the compatibility endpoints listen, once they do (for `status`).
    private let compat = Mutex<CompatStatus?>(nil)
    /// The sinks of the identities a caller may use (for `status`).
    private let sinkStatus = Mutex<(@Sendable (Set<String>) -> [SinkStatus])?>(nil)
    /// `limits.requestsPerSecondPerUID`: charged for token requests the cache cannot answer
    /// (upstream work) only; cached answers and refusals cost the token service nothing.
    private let rateLimiter: RateLimiter<ContinuousClock>
    /// One record per grant and denial.
    private let audit: AuditLog<ContinuousClock>
    /// Node mode (`kubernetes:`): callers in pods get their own pod's tokens.
    let pods: PodIdentities?

    init(
        identities: [Identity], cache: TokenCache<ContinuousClock>, defaultMinimumValidity: Int, logger: Logger,
        rateLimiter: RateLimiter<ContinuousClock>, audit: AuditLog<ContinuousClock>, pods: PodIdentities? = nil,
        countRequest: @escaping @Sendable (_ op: String, _ outcome: String) -> Void = { _, _ in }
    ) {
        self.pods = pods
        self.rateLimiter = rateLimiter
        self.audit = audit
        self.countRequest = countRequest
        self.cache = cache
        self.identities = Mutex(Dictionary(uniqueKeysWithValues: identities.map { ($0.configuration.name, $0) }))
        self.defaultMinimumValidity = Atomic(defaultMinimumValidity)
        self.logger = logger
        self.logsEachAnswer = Atomic(logger.logLevel <= .debug)
    }

    /// Replaces the served identities (reload). Callers in flight keep the identity they
    /// resolved; answers connections repeat are resolved again.
    func replaceIdentities(_ new: [Identity]) {
        identities.withLock { table in
            table = Dictionary(uniqueKeysWithValues: new.map { ($0.configuration.name, $0) })
            identitiesGeneration.add(1, ordering: .releasing)
        }
    }

    /// Applies `limits.requestsPerSecondPerUID` and `requestBurstPerUID` from a reload.
    func reconfigureRateLimit(ratePerSecond: Int, burst: Int) {
        rateLimiter.reconfigure(ratePerSecond: ratePerSecond, burst: burst)
    }

    /// Applies `cache.minValiditySeconds` from a reload to the requests that follow.
    func setDefaultMinimumValidity(seconds: Int) {
        defaultMinimumValidity.store(seconds, ordering: .relaxed)
    }

    /// Reads the logger's level again (a reload changed `log.level`).
    func logLevelChanged() {
        logsEachAnswer.store(logger.logLevel <= .debug, ordering: .relaxed)
    }

    /// Ends the answers connections repeat now (a reload is about to change the cache).
    func endRepeatedAnswers() {
        identitiesGeneration.add(1, ordering: .releasing)
    }

    /// The identities now served.
    var currentIdentities: [Identity] {
        identities.withLock { Array($0.values) }
    }

    // MARK: BrokerResponder

    func immediateResponse(to request: BrokerRequest, from peer: PeerCredentials) -> ImmediateResponse? {
        if request.op == "token" {
            guard let (answer, repeatable) = cachedTokenAnswer(request, from: peer) else {
                // A miss: the one kind of request that costs the token service anything, so
                // the only one the per-uid bucket charges. Charged here only: `respond(to:)`
                // follows for the same request when this returns nil.
                guard let wait = rateLimiter.admit(uid: peer.uid) else { return nil }
                countRequest(request.op, WireErrorCode.throttled.rawValue)
                return ImmediateResponse(throttled(request, peer: peer, wait: wait))
            }
            countRequest(request.op, answer.error?.code ?? "ok")
            return ImmediateResponse(answer, repeatable: repeatable)
        }
        let response = answerImmediately(request, from: peer)
        countRequest(request.op, response.error?.code ?? "ok")
        return ImmediateResponse(response)
    }

    func respond(to request: BrokerRequest, from peer: PeerCredentials, completion: @escaping @Sendable (BrokerResponse) -> Void) {
        let finish: @Sendable (BrokerResponse) -> Void = { [countRequest] response in
            countRequest(request.op, response.error?.code ?? "ok")
            completion(response)
        }
        guard request.op == "token" else { return finish(answerImmediately(request, from: peer)) }
        switch resolve(request, peer: peer) {
        case .failure(let error):
            finish(.failure(id: request.id, error))
        case .success(let (key, minimum)):
            cache.token(for: key, minimumValidity: minimum) { [self] result in
                switch result {
                case .success(let token): finish(success(token, request: request, peer: peer))
                case .failure(let error): finish(.failure(id: request.id, failed(error, key: key, peer: peer)))
                }
            }
        }
    }

    /// Every op but `token`: answered at once.
    private func answerImmediately(_ request: BrokerRequest, from peer: PeerCredentials) -> BrokerResponse {
        switch request.op {
        case "ping":
            return BrokerResponse(id: request.id, ok: true)
        case "status":
            return BrokerResponse(id: request.id, ok: true, status: status(for: peer))
        default:
            return .failure(id: request.id, WireError(code: .unknownOp, message: "unknown op '\(request.op.prefix(64))'; expected token, status or ping"))
        }
    }

    /// An `op: token` request answered from the cache (with what lets the connection repeat
    /// a token), or refused; nil when it needs an exchange.
    private func cachedTokenAnswer(_ request: BrokerRequest, from peer: PeerCredentials) -> (BrokerResponse, RepeatableTokenAnswer?)? {
        // Read before resolving: a reload during the resolution makes the answer stale at once.
        let generation = identitiesGeneration.load(ordering: .acquiring)
        switch resolve(request, peer: peer) {
        case .failure(let error):
            return (.failure(id: request.id, error), nil)
        case .success(let (key, minimum)):
            // Read before the cache's own reading, so the repeat ends no later than `expiresIn` ticks.
            let asked = ContinuousClock.now
            guard let hit = cache.cachedToken(for: key, minimumValidity: minimum) else { return nil }
            let tick = hit.expiresIn - .seconds(hit.expiresIn.components.seconds)
            let repeatable = RepeatableTokenAnswer(broker: self, hit: hit, generation: generation, holdsUntil: asked.advanced(by: tick))
            return (success(hit, request: request, peer: peer), repeatable)
        }
    }

    /// A repeat of an answer from `cachedTokenAnswer`: still right while no reload happened
    /// and `expiresIn` still reads the same; audited and counted like the first, and like it
    /// never rate limited (a cached answer costs the token service nothing).
    fileprivate func renew(_ answer: RepeatableTokenAnswer, request: BrokerRequest, peer: PeerCredentials) -> RepeatVerdict {
        let now = ContinuousClock.now
        guard identitiesGeneration.load(ordering: .acquiring) == answer.generation, now <= answer.holdsUntil else { return .expired }
        // A pod's token holds only while its pod is on the node: a deleted pod's connection
        // is refused at its next request, not a second later.
        if let pods, let uid = peer.podUID, PodIdentities.isPodKey(answer.hit.key.identity), pods.registry.tokens(ofPod: uid)?.isEmpty != false {
            return .expired
        }
        recordServed(answer.hit.key, to: peer, at: now)
        answer.hit.countRepeatedHit()
        countRequest(request.op, "ok")
        return .holds
    }

    /// Logs and audits a failed token request; the error as the caller sees it.
    private func failed(_ error: TokenExchangeError, key: TokenKey, peer: PeerCredentials) -> WireError {
        logger.debug("token request failed", metadata: peer.knownMetadata.merging([
            "token.identity": "\(key.identity)", "token.scope": "\(key.scope)", "error.code": "\(error.code.rawValue)",
        ]) { _, new in new })
        audit.record(.failed, identity: key.identity, scope: key.scope.value, peer: peer, errorCode: error.code.rawValue)
        return Self.wireError(error)
    }

    // MARK: Compatibility endpoints

    /// `op: token` for the compatibility endpoints: the same resolution, rate limit and
    /// audit records as on the socket. Only a miss is charged to the uid's bucket, once per
    /// call: a refusal does no upstream work, so the endpoints' second try with the
    /// default identity after `identity_required` is charged at most once.
    /// `wanted`: what the route asks for (nil: as the request's scope says).
    func compatToken(for request: BrokerRequest, from peer: PeerCredentials, wanted: CredentialKind? = nil) async -> Result<CachedToken, WireError> {
        let key: TokenKey, minimum: Duration
        switch resolve(request, peer: peer, wanted: wanted) {
        case .failure(let error): return .failure(error)
        case .success(let resolved): (key, minimum) = resolved
        }
        let granted = { [audit] (served: CachedToken) -> Result<CachedToken, WireError> in
            audit.record(.granted, identity: served.key.identity, scope: served.key.scope.value, peer: peer)
            return .success(served)
        }
        if let hit = cache.cachedToken(for: key, minimumValidity: minimum) { return granted(hit) }
        if let wait = rateLimiter.admit(uid: peer.uid), let error = throttled(request, peer: peer, wait: wait).error {
            return .failure(error)
        }
        do {
            return granted(try await cache.token(for: key, minimumValidity: minimum))
        } catch {
            return .failure(failed(error, key: key, peer: peer))
        }
    }

    /// The identity whose client id, object id or resource id is `value` (ids compare
    /// case-insensitively, as Azure's do).
    func identityName(matching selector: CompatEndpoints.Selector) -> String? {
        let all = identities.withLock { Array($0.values) }
        func same(_ a: String?, _ b: String) -> Bool { a.map { $0.lowercased() == b.lowercased() } ?? false }
        return all.first { identity in
            switch selector {
            case .clientId(let id):
                if case .entra(let entra) = identity.configuration.exchange { return same(entra.clientId, id) }
                return false
            case .objectId(let id): return same(identity.configuration.aliases.objectId, id)
            case .resourceId(let id): return same(identity.configuration.aliases.resourceId, id)
            }
        }?.configuration.name
    }

    /// The client id of identity `name`, for the compatibility responses.
    func clientId(of name: String) -> String? {
        guard case .entra(let entra) = identities.withLock({ $0[name] })?.configuration.exchange else { return nil }
        return entra.clientId
    }

    /// Where `status` finds the sinks of a set of identity names.
    func setSinkStatus(_ provider: @escaping @Sendable (Set<String>) -> [SinkStatus]) {
        sinkStatus.withLock { $0 = provider }
    }

    /// Records where the compatibility endpoints listen (shown by `status`).
    func setCompatStatus(_ status: CompatStatus?) {
        compat.withLock { $0 = status }
    }


    // MARK: Resolution

    /// Finds the identity and scope for a token request and checks the caller may use it.
    /// `route`: what the route asks for (the AWS endpoint: credentials); nil lets the
    /// request's scope say (`IdentityChoice.wanted`).
    private func resolve(_ request: BrokerRequest, peer: PeerCredentials, wanted route: CredentialKind? = nil) -> Result<(TokenKey, Duration), WireError> {
        let asked = request.scope ?? request.resource.map({ Scope(resource: $0).value })
        if let asked, !Self.isPlausibleScope(asked) {
            return .failure(WireError(code: .badRequest, message: "'scope' must be 1-1024 printable characters without spaces"))
        }
        if let minimum = request.minValiditySeconds, !(0...86_400).contains(minimum) {
            return .failure(WireError(code: .badRequest, message: "'minValiditySeconds' must be between 0 and 86400"))
        }
        let minimum = Duration.seconds(request.minValiditySeconds ?? defaultMinimumValidity.load(ordering: .relaxed))
        // A caller in a pod that names no identity gets its own pod's tokens (node mode);
        // configured identities serve it only by name.
        if let pods, request.identity == nil, let podUID = peer.podUID {
            switch pods.resolve(request, peer: peer, podUID: podUID, scope: asked) {
            case .resolved(let resolution):
                return .success((resolution.key, minimum))
            case .refused(let error):
                audit.record(.denied, identity: nil, scope: asked, peer: peer, errorCode: error.code)
                return .failure(error)
            }
        }
        let wanted = route ?? IdentityChoice.wanted(scope: asked)
        let identity: Identity
        switch authorizedIdentity(request.identity, peer: peer, scope: asked, wanted: wanted, inferred: route == nil) {
        case .failure(let error): return .failure(error)
        case .success(let found): identity = found
        }
        if let mismatch = IdentityChoice.mismatch(identity, wanted: wanted, scope: asked, inferred: route == nil) {
            return .failure(mismatch)
        }
        // AWS credentials are for the identity's role, not for a scope.
        guard let scopeText = identity.configuration.exchange.implicitScope?.value ?? asked else {
            return .failure(WireError(code: .badRequest, message: "op 'token' needs 'scope' (or IMDS-style 'resource')"))
        }
        return .success((TokenKey(identity: identity.configuration.name, scope: Scope(scopeText)), minimum))
    }

    /// The identity named `requested` if `peer` may use it, or the only one it may use that
    /// gives `wanted` (`IdentityChoice`).
    private func authorizedIdentity(_ requested: String?, peer: PeerCredentials, scope: String?, wanted: CredentialKind, inferred: Bool) -> Result<Identity, WireError> {
        if let requested {
            guard let identity = identities.withLock({ $0[requested] }) else { return .failure(unknownIdentity(requested, peer: peer, scope: scope)) }
            guard identity.policy.allows(peer) else {
                audit.record(.denied, identity: requested, scope: scope, peer: peer, errorCode: WireErrorCode.forbidden.rawValue)
                return .failure(WireError(code: .forbidden, message: "\(IdentityChoice.describe(peer)) may not use identity '\(requested)'" + available(to: peer)))
            }
            return .success(identity)
        }
        // The usual case, one identity the caller may use and of the kind asked for, without building a list.
        let (only, count) = identities.withLock { table -> (Identity?, Int) in
            var only: Identity?
            var count = 0
            for identity in table.values where identity.policy.allows(peer) {
                only = identity
                count += 1
            }
            return (only, count)
        }
        if count == 0, pods == nil, identities.withLock({ $0.isEmpty }) {
            audit.record(.denied, identity: nil, scope: scope, peer: peer, errorCode: WireErrorCode.forbidden.rawValue)
            return .failure(WireError(
                code: .forbidden,
                message: "no identities are configured on this broker; add one to its configuration file (docs/configuration.md) "
                    + "or start it with AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE set"))
        }
        if count == 1, let only, only.configuration.exchange.gives == wanted { return .success(only) }
        let allowed = count == 0 ? [] : identities.withLock { Array($0.values) }.filter { $0.policy.allows(peer) }
        let chosen = IdentityChoice.choose(among: allowed, wanted: wanted, inferred: inferred, caller: peer)
        if case .failure(let error) = chosen, error.code == WireErrorCode.forbidden.rawValue {
            audit.record(.denied, identity: nil, scope: scope, peer: peer, errorCode: error.code)
        }
        return chosen
    }

    /// A name no identity has: `forbidden`, worded as a denial is, so that a caller cannot
    /// tell names that exist from names that do not; root and the daemon's user, who can
    /// read the configuration anyway, get `unknown_identity`. Audited either way.
    private func unknownIdentity(_ requested: String, peer: PeerCredentials, scope: String?) -> WireError {
        // Caller text: logged only when it is a plausible name.
        let logged = IdentityReader.isValidName(requested) ? requested : "(invalid)"
        audit.record(.denied, identity: logged, scope: scope, peer: peer, errorCode: WireErrorCode.unknownIdentity.rawValue)
        if peer.uid == 0 || peer.uid == daemonUID {
            return WireError(code: .unknownIdentity, message: "no identity named '\(requested.prefix(64))'" + available(to: peer))
        }
        return WireError(code: .forbidden, message: "\(IdentityChoice.describe(peer)) may not use identity '\(requested.prefix(64))'" + available(to: peer))
    }

    /// "; yours: a, b" — the names `peer` may use (its own, so listing them tells it
    /// nothing about anyone else's), or that it may use none.
    private func available(to peer: PeerCredentials) -> String {
        let names = identities.withLock { Array($0.values) }.filter { $0.policy.allows(peer) }.map(\.configuration.name).sorted()
        return names.isEmpty ? "; no identity is available to you" : "; identities available to you: \(names.joined(separator: ", "))"
    }

    private static func isPlausibleScope(_ scope: String) -> Bool {
        // On UTF-8 bytes: every byte of a multi-byte character is ≥ 0x80, so this is the
        // same test as on the characters, without decoding them.
        guard (1...1024).contains(scope.utf8.count) else { return false }
        let printable = { (byte: UInt8) in byte > 0x20 && byte != 0x7F }
        return scope.utf8.withContiguousStorageIfAvailable { $0.allSatisfy(printable) } ?? scope.utf8.allSatisfy(printable)
    }

    // MARK: Responses

    /// Logs (at debug) and audits a token handed to `peer`, first or repeated.
    private func recordServed(_ key: TokenKey, to peer: PeerCredentials, at instant: ContinuousClock.Instant? = nil) {
        if logsEachAnswer.load(ordering: .relaxed) {
            logger.debug("token served", metadata: peer.knownMetadata.merging(["token.identity": "\(key.identity)", "token.scope": "\(key.scope)"]) { _, new in new })
        }
        audit.record(.granted, identity: key.identity, scope: key.scope.value, peer: peer, at: instant)
    }

    private func success(_ cached: CachedToken, request: BrokerRequest, peer: PeerCredentials) -> BrokerResponse {
        recordServed(cached.key, to: peer)
        if let aws = cached.token.awsCredentials {
            return BrokerResponse(
                id: request.id, ok: true, expiresOn: Int64(cached.token.expiresAt.timeIntervalSince1970), expiresIn: cached.expiresIn.components.seconds,
                identity: cached.key.identity, scope: cached.key.scope.value, credentials: Self.wireCredentials(aws))
        }
        // A pod's token names its service account and app rather than the cache's key.
        let pod = pods?.registration(of: cached.key.identity)
        return BrokerResponse(
            id: request.id, ok: true, token: cached.token.value, tokenType: cached.token.tokenType,
            expiresOn: Int64(cached.token.expiresAt.timeIntervalSince1970),
            expiresIn: cached.expiresIn.components.seconds,
            identity: pod == nil ? cached.key.identity : nil, scope: cached.key.scope.value,
            serviceAccount: pod?.account.description, clientId: pod?.clientId)
    }

    /// `throttled` for a uid over its request rate, with the wait in whole seconds (at least 1).
    private func throttled(_ request: BrokerRequest, peer: PeerCredentials, wait: Duration) -> BrokerResponse {
        let seconds = max(1, Int(wait.components.seconds) + (wait.components.attoseconds > 0 ? 1 : 0))
        if request.op == "token" {
            // Unvalidated caller text: logged only when it is a plausible name and scope.
            let identity = request.identity.map { IdentityReader.isValidName($0) ? $0 : "(invalid)" }
            let scope = (request.scope ?? request.resource).map { Self.isPlausibleScope($0) ? $0 : "(invalid)" }
            audit.record(.throttled, identity: identity, scope: scope, peer: peer, errorCode: WireErrorCode.throttled.rawValue)
        }
        return .failure(id: request.id, WireError(
            code: .throttled, message: "uid \(peer.uid) sends requests faster than this broker allows (limits.requestsPerSecondPerUID); retry in \(seconds) s",
            retryable: true, retryAfter: seconds))
    }

    private func status(for peer: PeerCredentials) -> BrokerStatus {
        let visible = identities.withLock { Array($0.values) }.filter { $0.policy.allows(peer) }
        let entries = visible.sorted { $0.configuration.name < $1.configuration.name }.map { identity -> IdentityStatus in
            let snapshot = cache.snapshot(identity: identity.configuration.name)
            var clientId: String?
            if case .entra(let entra) = identity.configuration.exchange { clientId = entra.clientId }
            return IdentityStatus(
                name: identity.configuration.name,
                exchange: identity.configuration.exchange.kind,
                source: identity.configuration.source.summary,
                clientId: clientId,
                cachedScopes: snapshot.filter { $0.expiresIn != nil }.map(\.scope.value),
                lastError: snapshot.compactMap(\.lastError).first.map(Self.wireError)
                    ?? Self.assertionProblem(identity, at: Date()).map { WireError(code: .assertionUnavailable, message: $0, retryable: true) })
        }
        // The header secret only goes to callers who could get a token anyway.
        var compat = self.compat.withLock { $0 }
        let pod = peer.podUID.flatMap { uid in pods?.status(podUID: uid) }
        if entries.isEmpty && pod == nil { compat?.identityHeader = nil }
        let sinks = sinkStatus.withLock { $0 }?(Set(visible.map(\.configuration.name))) ?? []
        return BrokerStatus(ready: readiness().ready, identities: entries, compat: compat, pod: pod, sinks: sinks.isEmpty ? nil : sinks)
    }
}

/// A cached token answer a connection may send again (see `RepeatableAnswer`).
final class RepeatableTokenAnswer: RepeatableAnswer {
    fileprivate let broker: Broker
    fileprivate let hit: CachedToken
    /// `Broker.identitiesGeneration` when the request was resolved.
    fileprivate let generation: UInt64
    /// The last instant at which the answer's `expiresIn` is still right.
    fileprivate let holdsUntil: ContinuousClock.Instant

    fileprivate init(broker: Broker, hit: CachedToken, generation: UInt64, holdsUntil: ContinuousClock.Instant) {
        self.broker = broker
        self.hit = hit
        self.generation = generation
        self.holdsUntil = holdsUntil
    }

    func renew(_ request: BrokerRequest, for peer: PeerCredentials) -> RepeatVerdict {
        broker.renew(self, request: request, peer: peer)
    }
}
