import AssertionSources
import BrokerServer
import FoundationEssentials
import Glibc
import Logging
import Synchronization
import TokenBrokerProtocol
import TokenCache
import TokenExchange

/// `status` (what a caller may see) and readiness (`/readyz`, `status.ready`).
extension Broker {
    /// Where `status` finds the sinks of a set of identity names.
    func setSinkStatus(_ provider: @escaping @Sendable (Set<String>) -> [SinkStatus]) {
        sinkStatus.withLock { $0 = provider }
    }

    /// Records where the compatibility endpoints listen (shown by `status`).
    func setCompatStatus(_ status: CompatStatus?) {
        compat.withLock { $0 = status }
    }

    /// The identities `peer` may use with their cached scopes and last errors, the pod's
    /// own tokens in node mode, and where the compatibility endpoints listen.
    func status(for peer: PeerCredentials) -> BrokerStatus {
        let visible = currentIdentities.filter { $0.policy.allows(peer) }
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

    /// Ready (`/readyz`, `status.ready`) means every identity can obtain a token now: its
    /// source reports no error, and an assertion read from a file is inside its validity
    /// window (a file that stopped being rotated leaves an expired assertion that no
    /// exchange accepts). Sources that fetch on demand are ready unless their last fetch
    /// failed: an assertion they hold past its use is fetched again. No identities: not ready.
    func readiness() -> (ready: Bool, reason: String) {
        let all = currentIdentities
        if all.isEmpty, let pods {
            // Node mode without configured identities: what pods ask for is theirs to have.
            let counts = pods.registry.counts
            return (true, "node mode: \(counts.pods) pods, \(counts.tokens) projected service-account tokens")
        }
        guard !all.isEmpty else { return (false, "no identities are configured") }
        let now = Date()
        for identity in all.sorted(by: { $0.configuration.name < $1.configuration.name }) {
            if let problem = Self.assertionProblem(identity, at: now) {
                return (false, "identity '\(identity.configuration.name)': \(problem)")
            }
        }
        return (true, "ready")
    }

    /// Why `identity` cannot obtain a token at `now` for want of an assertion, or nil.
    static func assertionProblem(_ identity: Identity, at now: Date) -> String? {
        let snapshot = identity.source.snapshot()
        if let problem = snapshot.errorMessage { return problem }
        guard case .file(let path) = identity.configuration.source, let claims = snapshot.claims else { return nil }
        // The margins `Assertion.checkValidity` uses before sending one.
        if let expiry = claims.expiresAt, expiry.timeIntervalSince(now) < 5 {
            return "the assertion in \(path) expired at \(Timestamp.iso8601(expiry)) and has not been replaced; is the file still being rotated?"
        }
        if let notBefore = claims.notBefore, notBefore.timeIntervalSince(now) > 60 {
            return
                "the assertion in \(path) is not valid before \(Timestamp.iso8601(notBefore)); check the clocks of this host and the token's issuer"
        }
        return nil
    }
}
