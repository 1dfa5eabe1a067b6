import AssertionSources
import BrokerServer
import FoundationEssentials
import Logging
import Synchronization
import TokenBrokerProtocol
import TokenCache
import TokenExchange

/// The socket's requests (`BrokerResponder`): each decided once, then answered now, or
/// by the exchange its ticket waits for.
extension Broker {
    func answer(_ request: BrokerRequest, from peer: PeerCredentials) -> BrokerAnswer {
        let response: BrokerResponse
        switch BrokerOperation(rawValue: request.op) {
        case .token:
            return tokenAnswer(request, from: peer)
        case .ping:
            response = BrokerResponse(id: request.id, ok: true)
        case .status:
            response = BrokerResponse(id: request.id, ok: true, status: status(for: peer))
        case nil:
            response = .failure(
                id: request.id, WireError(code: .unknownOp, message: "unknown op '\(request.op.prefix(64))'; expected token, status or ping"))
        }
        countRequest(request.op, response.error?.code ?? "ok")
        return .now(response)
    }

    private func tokenAnswer(_ request: BrokerRequest, from peer: PeerCredentials) -> BrokerAnswer {
        // Read before resolving: a reload during the resolution makes the answer stale at once.
        let generation = identitiesGeneration.load(ordering: .acquiring)
        // Read before the cache's own reading, so a repeat ends no later than `expiresIn` ticks.
        let asked = ContinuousClock.now
        switch decide(request, from: peer, route: .socket) {
        case .refused(let error):
            countRequest(request.op, error.code)
            return .now(.failure(id: request.id, error))
        case .cached(let hit):
            countRequest(request.op, "ok")
            recordServed(hit.key, to: peer)
            let tick = hit.expiresIn - .seconds(hit.expiresIn.components.seconds)
            let check = repeatCheck(hit, generation: generation, holdsUntil: asked.advanced(by: tick))
            return .repeatable(response(for: hit, id: request.id), check)
        case .exchange(let key, let minimum):
            return .exchange(TokenTicket(broker: self, request: request, peer: peer, key: key, minimum: minimum))
        }
    }

    /// Whether a connection may send `hit` again: while no reload happened and `expiresIn`
    /// still reads the same. A repeat is audited and counted like the first answer, and like
    /// it never rate limited (a cached answer costs the token service nothing).
    private func repeatCheck(_ hit: CachedToken, generation: UInt64, holdsUntil: ContinuousClock.Instant) -> RepeatCheck {
        RepeatCheck { [self] peer, answers in
            let now = ContinuousClock.now
            guard identitiesGeneration.load(ordering: .acquiring) == generation, now <= holdsUntil else { return .expired }
            // A pod's token holds only while its pod is on the node: a deleted pod's connection
            // is refused at its next request, not a second later.
            if let pods, let uid = peer.podUID, PodIdentities.isPodKey(hit.key.identity), pods.registry.tokens(ofPod: uid)?.isEmpty != false {
                return .expired
            }
            recordServed(hit.key, to: peer, at: now, answers: answers)
            hit.countRepeatedHit(answers)
            countRequest(BrokerOperation.token.rawValue, "ok", answers)
            return .holds
        }
    }

    /// The exchange a miss waits for, with what `decide` resolved (not resolved again).
    private struct TokenTicket: ExchangeTicket {
        let broker: Broker
        let request: BrokerRequest
        let peer: PeerCredentials
        let key: TokenKey
        let minimum: Duration

        func wait(_ completion: @escaping @Sendable (BrokerResponse) -> Void) {
            broker.cache.lookupOrJoin(key, minimumValidity: minimum) { [self] result in
                let response: BrokerResponse
                switch result {
                case .success(let token):
                    broker.recordServed(token.key, to: peer)
                    response = broker.response(for: token, id: request.id)
                case .failure(let error):
                    response = .failure(id: request.id, broker.failed(error, key: key, peer: peer))
                }
                broker.countRequest(request.op, response.error?.code ?? "ok")
                completion(response)
            }
        }
    }

    /// Logs (at debug) and audits a token handed to `peer`, first or repeated (`answers`
    /// times at once: one record, which says how many).
    func recordServed(_ key: TokenKey, to peer: PeerCredentials, at instant: ContinuousClock.Instant? = nil, answers: Int = 1) {
        if logsEachAnswer.load(ordering: .relaxed) {
            var metadata = peer.knownMetadata.merging(["token.identity": "\(key.identity)", "token.scope": "\(key.scope)"]) { _, new in new }
            if answers > 1 { metadata["token.answers"] = "\(answers)" }
            logger.debug("token served", metadata: metadata)
        }
        audit.record(.granted, identity: key.identity, scope: key.scope.value, peer: peer, at: instant, answers: answers)
    }

    /// Logs and audits a failed token request; the error as the caller sees it.
    func failed(_ error: TokenExchangeError, key: TokenKey, peer: PeerCredentials) -> WireError {
        logger.debug(
            "token request failed",
            metadata: peer.knownMetadata.merging([
                "token.identity": "\(key.identity)", "token.scope": "\(key.scope)", "error.code": "\(error.code.rawValue)",
            ]) { _, new in new })
        audit.record(.failed, identity: key.identity, scope: key.scope.value, peer: peer, errorCode: error.code.rawValue)
        return Self.wireError(error)
    }

    /// `throttled` for a miss whose uid is over its request rate, with the wait in whole seconds
    /// (at least 1); audited with the identity and scope the request resolved to (the route's
    /// default identity included), which resolution has already validated.
    func throttled(_ key: TokenKey, peer: PeerCredentials, wait: Duration) -> WireError {
        let seconds = max(1, Int(wait.components.seconds) + (wait.components.attoseconds > 0 ? 1 : 0))
        audit.record(.throttled, identity: key.identity, scope: key.scope.value, peer: peer, errorCode: WireErrorCode.throttled.rawValue)
        return WireError(
            code: .throttled,
            message: "uid \(peer.uid) sends requests faster than this broker allows (limits.requestsPerSecondPerUID); retry in \(seconds) s",
            retryable: true, retryAfter: seconds)
    }
}
