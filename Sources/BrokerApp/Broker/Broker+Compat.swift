import AssertionSources
import BrokerServer
import FoundationEssentials
import Logging
import Synchronization
import TokenBrokerProtocol
import TokenCache
import TokenExchange

/// `op: token` for the compatibility endpoints: the same decision (resolution, rate limit,
/// audit records) as on the socket, waited for rather than ticketed.
extension Broker {
    /// A token for `request` as `route` asks for it (`TokenRoute.managedIdentity`, `.awsContainer`).
    func compatToken(for request: BrokerRequest, from peer: PeerCredentials, route: TokenRoute = .socket) async -> Result<CachedToken, WireError> {
        switch decide(request, from: peer, route: route) {
        case .refused(let error):
            return .failure(error)
        case .cached(let hit):
            recordServed(hit.key, to: peer)
            return .success(hit)
        case .exchange(let key, let minimum):
            do {
                let served = try await cache.token(for: key, minimumValidity: minimum)
                recordServed(served.key, to: peer)
                return .success(served)
            } catch {
                return .failure(failed(error, key: key, peer: peer))
            }
        }
    }
}
