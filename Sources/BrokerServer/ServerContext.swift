import Logging
import NIOCore
import Synchronization
import TokenExchange

/// What every transport's server shares: its limits, whom requests go to, the
/// open connections and their limits, and how a connection is served once its peer is
/// known. The transports differ only in how they listen and move bytes.
final class ServerContext: Sendable {
    let limits: ConnectionLimits
    let responder: any BrokerResponder
    let metrics: (any MetricsExposition)?
    let service: (any HTTPService)?
    let logger: Logger
    let connections = ConnectionRegistry()
    let refusals = RefusalLog()
    /// Opens when the server accepts connections, fails when listening failed.
    let listening = Latch()

    /// The listen(2) backlog of every listener.
    static let backlog: CInt = 1024

    init(
        limits: ConnectionLimits, responder: any BrokerResponder, metrics: (any MetricsExposition)?, service: (any HTTPService)?, logger: Logger
    ) {
        self.limits = limits
        self.responder = responder
        self.metrics = metrics
        self.service = service
        self.logger = logger
    }

    /// Listens with `listen` unless the server already does (`isListening`), then opens
    /// `listening`; a failure fails it, so waiters hear why.
    func startListening(isListening: Bool, _ listen: () async throws -> Void) async throws {
        if !isListening {
            do {
                try await listen()
            } catch {
                listening.fail(error)
                throw error
            }
        }
        listening.open()
    }

    /// How a new connection is served once its peer is known: the sniffer first.
    func makeSession(for connection: any ConnectionIO, peer: PeerCredentials) -> any ConnectionSession {
        let connectionGuard = ConnectionGuard(
            requestTimeout: TimeAmount(limits.requestReadTimeout), idleTimeout: TimeAmount(limits.idleTimeout))
        return ProtocolSniffer(
            connection: connection, responder: responder, peer: peer, maxRequestBytes: limits.maxRequestBytes,
            connectionGuard: connectionGuard, metrics: metrics, service: service)
    }

    /// Asks every connection to finish what is in flight, waits up to `drainTimeout` for
    /// them to close, then closes the rest.
    func drain() async {
        connections.drainAll()
        let deadline = ContinuousClock.now.advanced(by: limits.drainTimeout)
        while connections.count > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        connections.closeAll()
    }
}

/// Logs refused connections without letting a flood of them fill the disk: at most one
/// warning per reason every 10 s, counting the refusals in between.
final class RefusalLog: Sendable {
    enum Reason: String, Sendable {
        case tooManyConnections = "too many connections"
        case tooManyConnectionsOfUID = "too many connections from one uid"
        case tooManyConnectionsOfPod = "too many connections from one pod"
    }

    private let throttle = Mutex(LogThrottle<Reason, ContinuousClock.Instant>())

    func refused(_ reason: Reason, limit: Int, uid: UInt32?, podUID: String? = nil, logger: Logger) {
        let now = ContinuousClock.now
        guard let suppressed = throttle.withLock({ $0.admit(reason, at: now) }) else { return }
        var metadata: Logger.Metadata = ["server.limit": "\(limit)", "server.refused_since_last_warning": "\(suppressed)"]
        if let uid { metadata["peer.uid"] = "\(uid)" }
        if let podUID { metadata["peer.pod_uid"] = "\(podUID)" }
        logger.warning("connection refused: \(reason.rawValue)", metadata: metadata)
    }
}

/// A one-shot gate: waiters resume when it opens (or fails).
final class Latch: Sendable {
    private let state = Mutex<(result: Result<Void, any Error>?, waiters: [CheckedContinuation<Void, any Error>])>((nil, []))

    func open() { finish(.success(())) }
    func fail(_ error: any Error) { finish(.failure(error)) }

    private func finish(_ result: Result<Void, any Error>) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            guard state.result == nil else { return [] }
            state.result = result
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    func wait() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let result = state.withLock { state -> Result<Void, any Error>? in
                if state.result == nil { state.waiters.append(continuation) }
                return state.result
            }
            if let result { continuation.resume(with: result) }
        }
    }
}
