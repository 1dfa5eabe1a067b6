import CEpoll
import Glibc
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Serves a listening Unix socket on the broker's own event loops: every loop watches the
/// listening socket (`EPOLLEXCLUSIVE`, so a new connection wakes one of them), accepts,
/// learns the peer (`PeerAttestation`) and serves the connection to its end.
final class EpollListener: Sendable {
    private let descriptor: CInt
    /// The loops serving this socket's connections (the watchdog probes each).
    let loops: [EpollLoop]
    private let acceptors: [Acceptor]
    private let stopped = Latch()
    private let stopRequested = Atomic<Bool>(false)

    /// `attestedEnvironment`: the variables read from each caller's environment at accept.
    init(descriptor: CInt, threads: Int, attestedEnvironment: [String], context: ServerContext) throws(BrokerServerError) {
        self.descriptor = descriptor
        var loops: [EpollLoop] = []
        for _ in 0..<max(threads, 1) { loops.append(try EpollLoop()) }
        self.loops = loops
        acceptors = loops.map { Acceptor(listening: descriptor, loop: $0, context: context, attestedEnvironment: attestedEnvironment) }
        for (index, loop) in loops.enumerated() { loop.start(name: "tokenbroker-\(index)") }
    }

    /// Starts accepting on every loop.
    func startAccepting() {
        for acceptor in acceptors { acceptor.loop.execute { acceptor.start() } }
    }

    /// Stops accepting and closes the listening socket. Connections not yet accepted stay
    /// in the kernel's backlog (for the next process, when the socket is inherited).
    func stopAccepting() {
        guard !stopRequested.exchange(true, ordering: .relaxed) else { return }
        let remaining = Atomic<Int>(acceptors.count)
        let descriptor = self.descriptor
        let stopped = self.stopped
        for acceptor in acceptors {
            acceptor.loop.execute {
                acceptor.stop()
                if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                    close(descriptor)
                    stopped.open()
                }
            }
        }
    }

    /// Returns once `stopAccepting()` has closed the listening socket.
    func waitUntilStopped() async {
        try? await stopped.wait()
    }

    /// Stops the loops' threads (after the connections are gone).
    func stopLoops() async {
        for loop in loops { await loop.stop() }
    }
}

/// One loop's watch on the listening socket.
private final class Acceptor: EpollSource, @unchecked Sendable {  // @unchecked: used only on `loop`
    let loop: EpollLoop
    private let listening: CInt
    fileprivate let context: ServerContext
    private let attestedEnvironment: [String]
    private var watching = false
    private var stopped = false
    /// When accepting last failed with a warning, and how many failures since.
    fileprivate var lastWarning: NIODeadline?
    fileprivate var failuresSinceWarning = 0

    /// Connections taken per wake-up before the loop serves others.
    static let acceptsPerWakeup = 64

    init(listening: CInt, loop: EpollLoop, context: ServerContext, attestedEnvironment: [String]) {
        self.listening = listening
        self.loop = loop
        self.context = context
        self.attestedEnvironment = attestedEnvironment
    }

    func start() {
        guard !watching, !stopped else { return }
        do {
            try loop.register(self, descriptor: listening, events: cepoll_in() | cepoll_exclusive())
            watching = true
        } catch {
            context.logger.error("cannot watch the listening socket: \(error)")
        }
    }

    func stop() {
        stopped = true
        guard watching else { return }
        watching = false
        loop.deregister(descriptor: listening)
    }

    func ready(_ events: UInt32) {
        for _ in 0..<Self.acceptsPerWakeup {
            let descriptor = cepoll_accept(listening)
            if descriptor >= 0 {
                context.serve(descriptor, on: loop, attesting: attestedEnvironment)
                continue
            }
            switch errno {
            case EINTR, ECONNABORTED: continue
            case EAGAIN, EWOULDBLOCK: return
            default:
                // Out of descriptors or memory: the socket stays readable, so stop watching
                // it for a moment instead of spinning; the backlog holds the clients.
                warnAcceptFailed(errno)
                stop()
                stopped = false
                _ = loop.schedule(at: .now() + .milliseconds(100)) { [self] in start() }
                return
            }
        }
    }
}

extension Acceptor {
    /// At most one warning every 10 s, with the failures in between.
    fileprivate func warnAcceptFailed(_ error: CInt) {
        let now = NIODeadline.now()
        if let last = lastWarning, now < last + .seconds(10) {
            failuresSinceWarning += 1
            return
        }
        context.logger.warning(
            "cannot accept connections: \(String(cString: strerror(error))); retrying every 100 ms, clients wait in the backlog",
            metadata: ["server.accept_failures_since_last_warning": "\(failuresSinceWarning)"])
        lastWarning = now
        failuresSinceWarning = 0
    }
}

/// A connection of an `EpollListener` in the `ConnectionRegistry`: from accept (while its
/// peer is attested) until it closes.
final class EpollTrackedConnection: TrackedConnection, @unchecked Sendable {  // @unchecked: the vars are used only on `loop`
    let loop: EpollLoop
    var connection: EpollConnection?
    var drainRequested = false
    var closeRequested = false

    init(loop: EpollLoop) {
        self.loop = loop
    }

    func drain() {
        loop.execute { [self] in
            drainRequested = true
            connection?.drain()
        }
    }

    func forceClose() {
        loop.execute { [self] in
            closeRequested = true
            connection?.closeNow()
        }
    }
}

extension ServerContext {
    /// A connection `loop` accepted: checked against the limits, attested (with the
    /// `environment` variables named), then served.
    fileprivate func serve(_ descriptor: CInt, on loop: EpollLoop, attesting environment: [String]) {
        guard let credentials = PeerAttestation.credentials(of: descriptor) else {
            // Not a caller the broker can name (the socket went away already): nothing to serve.
            close(descriptor)
            return
        }
        let tracked = EpollTrackedConnection(loop: loop)
        let id = ObjectIdentifier(tracked)
        guard connections.track(tracked, id: id, limit: limits.maxConnections) else {
            refusals.refused(.tooManyConnections, limit: limits.maxConnections, uid: nil, logger: logger)
            close(descriptor)
            return
        }
        guard connections.claim(uid: credentials.uid, limit: limits.maxConnectionsPerUID) else {
            refusals.refused(.tooManyConnectionsOfUID, limit: limits.maxConnectionsPerUID, uid: credentials.uid, logger: logger)
            connections.untrack(id: id)
            close(descriptor)
            return
        }
        let peer = PeerAttestation.attest(descriptor, credentials: credentials, environment: environment)
        // Pods' relays usually run as one uid: a pod is limited on its own too.
        if let pod = peer.podUID, !connections.claim(pod: pod, limit: limits.maxConnectionsPerPod) {
            refusals.refused(.tooManyConnectionsOfPod, limit: limits.maxConnectionsPerPod, uid: credentials.uid, podUID: pod, logger: logger)
            connections.release(uid: credentials.uid)
            connections.untrack(id: id)
            close(descriptor)
            return
        }
        open(descriptor, peer: peer, tracked: tracked)
    }

    private func open(_ descriptor: CInt, peer: PeerCredentials, tracked: EpollTrackedConnection) {
        let id = ObjectIdentifier(tracked)
        let connections = self.connections
        let uid = peer.uid
        let pod = peer.podUID
        let release = {
            connections.release(uid: uid)
            if let pod { connections.release(pod: pod) }
            connections.untrack(id: id)
        }
        guard !tracked.closeRequested else {
            close(descriptor)
            return release()
        }
        let connection: EpollConnection
        do {
            connection = try EpollConnection(descriptor: descriptor, loop: tracked.loop, onClose: release)
        } catch {
            logger.warning("cannot serve a new connection: \(error)")
            close(descriptor)
            return release()
        }
        tracked.connection = connection
        connections.settled(id: id)
        connection.start(makeSession(for: connection, peer: peer))
        // Accepted just as shutdown began: serve what it sends, then close.
        if tracked.drainRequested || connections.isDraining { connection.drain() }
    }
}
