import AssertionSources
import BrokerServer
import FoundationEssentials
import Logging
import Synchronization
import TokenBrokerProtocol
import TokenCache
import TokenExchange

/// From a token request to the one decision every route acts on: resolved once (identity,
/// scope, minimum validity), looked up once, charged to the caller's bucket once.
extension Broker {
    /// What a token request gets.
    enum TokenDecision {
        case refused(WireError)
        /// From the cache, now.
        case cached(CachedToken)
        /// A miss the caller's bucket admitted (and was charged for): the exchange for `key`.
        case exchange(TokenKey, minimum: Duration)
    }

    /// Resolves `request`, looks the cache up, and charges a miss to the caller's bucket:
    /// a miss is the one kind of request that costs the token service anything, so the only
    /// one the per-uid bucket charges (refusals and cached answers are free).
    func decide(_ request: BrokerRequest, from peer: PeerCredentials, route: TokenRoute) -> TokenDecision {
        let key: TokenKey, minimum: Duration
        switch resolve(request, peer: peer, route: route) {
        case .failure(let error): return .refused(error)
        case .success(let resolved): (key, minimum) = resolved
        }
        if let hit = cache.cachedToken(for: key, minimumValidity: minimum) { return .cached(hit) }
        if let wait = rateLimiter.admit(uid: peer.uid) { return .refused(throttled(key, peer: peer, wait: wait)) }
        return .exchange(key, minimum: minimum)
    }

    /// The identity and scope for a token request, checked for the caller, with the minimum
    /// validity it asks for. A request that names no identity where the caller may use
    /// several gets the route's default identity, when it has one.
    func resolve(_ request: BrokerRequest, peer: PeerCredentials, route: TokenRoute) -> Result<(TokenKey, Duration), WireError> {
        let resolved = resolveOnce(request, peer: peer, route: route)
        guard case .failure(let error) = resolved, error.kind == .identityRequired, request.identity == nil,
            let defaultIdentity = route.defaultIdentity
        else { return resolved }
        var named = request
        named.identity = defaultIdentity
        return resolveOnce(named, peer: peer, route: route)
    }

    private func resolveOnce(_ request: BrokerRequest, peer: PeerCredentials, route: TokenRoute) -> Result<(TokenKey, Duration), WireError> {
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
        let wanted = route.wanted ?? IdentityChoice.wanted(scope: asked)
        let inferred = route.wanted == nil
        let identity: Identity
        switch authorizedIdentity(request.identity, peer: peer, scope: asked, wanted: wanted, inferred: inferred, naming: route.naming) {
        case .failure(let error): return .failure(error)
        case .success(let found): identity = found
        }
        if let mismatch = IdentityChoice.mismatch(identity, wanted: wanted, scope: asked, inferred: inferred) {
            return .failure(mismatch)
        }
        // AWS credentials are for the identity's role, not for a scope.
        guard let scopeText = identity.configuration.exchange.implicitScope?.value ?? asked else {
            return .failure(WireError(code: .badRequest, message: "op 'token' needs 'scope' (or IMDS-style 'resource')"))
        }
        return .success((TokenKey(identity: identity.configuration.name, scope: Scope(scopeText)), minimum))
    }

    static func isPlausibleScope(_ scope: String) -> Bool {
        // On UTF-8 bytes: every byte of a multi-byte character is ≥ 0x80, so this is the
        // same test as on the characters, without decoding them.
        guard (1...1024).contains(scope.utf8.count) else { return false }
        let printable = { (byte: UInt8) in byte > 0x20 && byte != 0x7F }
        return scope.utf8.withContiguousStorageIfAvailable { $0.allSatisfy(printable) } ?? scope.utf8.allSatisfy(printable)
    }
}
