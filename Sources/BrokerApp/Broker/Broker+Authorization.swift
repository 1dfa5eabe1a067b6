import AssertionSources
import BrokerServer
import FoundationEssentials
import Logging
import Synchronization
import TokenBrokerProtocol
import TokenCache
import TokenExchange

/// Which identity a caller may use: the one it names if its allow rules admit the caller,
/// else the only one of the kind asked for. Every denial is audited.
extension Broker {
    /// The identity named `requested` if `peer` may use it, or the only one it may use that
    /// gives `wanted` (`IdentityChoice`). `naming`: the route's advice on naming one.
    func authorizedIdentity(
        _ requested: String?, peer: PeerCredentials, scope: String?, wanted: CredentialKind, inferred: Bool, naming: String
    ) -> Result<Identity, WireError> {
        if let requested {
            guard let identity = identities.withLock({ $0[requested] }) else { return .failure(unknownIdentity(requested, peer: peer, scope: scope)) }
            guard identity.policy.allows(peer) else {
                audit.record(.denied, identity: requested, scope: scope, peer: peer, errorCode: WireErrorCode.forbidden.rawValue)
                return .failure(
                    WireError(code: .forbidden, message: "\(IdentityChoice.describe(peer)) may not use identity '\(requested)'" + available(to: peer))
                )
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
            return .failure(
                WireError(
                    code: .forbidden,
                    message: "no identities are configured on this broker; add one to its configuration file (docs/configuration.md) "
                        + "or start it with AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE set"))
        }
        if count == 1, let only, only.configuration.exchange.gives == wanted { return .success(only) }
        let allowed = count == 0 ? [] : currentIdentities.filter { $0.policy.allows(peer) }
        let chosen = IdentityChoice.choose(among: allowed, wanted: wanted, inferred: inferred, caller: peer, naming: naming)
        if case .failure(let error) = chosen, error.kind == .forbidden {
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
        return WireError(
            code: .forbidden, message: "\(IdentityChoice.describe(peer)) may not use identity '\(requested.prefix(64))'" + available(to: peer))
    }

    /// "; yours: a, b" — the names `peer` may use (its own, so listing them tells it
    /// nothing about anyone else's), or that it may use none.
    private func available(to peer: PeerCredentials) -> String {
        let names = currentIdentities.filter { $0.policy.allows(peer) }.map(\.configuration.name).sorted()
        return names.isEmpty ? "; no identity is available to you" : "; identities available to you: \(names.joined(separator: ", "))"
    }
}
