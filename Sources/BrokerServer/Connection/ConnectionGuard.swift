import NIOCore
import TokenBrokerProtocol

/// Closes a connection when it has been idle (nothing read or answered, and no answer
/// owed) for `idleTimeout`, and bounds how long one request may take to arrive: a request must be
/// complete within `requestTimeout` of its first byte, so a slow or endless sender holds
/// nothing for long. (How large a request may be is the protocol handlers' business.)
///
/// Not a layer of its own: the protocol handler that reads the bytes tells it what it
/// saw, which costs nothing per request but a clock read. `ProtocolSniffer` starts it
/// when the connection opens and hands it to the protocol handler it installs, which
/// stops it when the connection closes.
///
/// One timer per connection, never more than `requestTimeout` ahead, re-armed when it
/// fires (so a request that starts later is still caught at its own deadline).
/// Confined to the connection's thread.
final class ConnectionGuard {
    enum Kind { case ndjson, http }

    /// What the connection speaks (how a timeout is answered); set once sniffed.
    var kind = Kind.ndjson
    private let requestTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    /// When the request being read began; nil between requests.
    private var requestStartedAt: NIODeadline?
    /// The last read or answer.
    private var lastActivity = NIODeadline.now()
    private var timer: (any ScheduledCall)?
    private var connection: (any ConnectionIO)?
    /// How many answers the connection still owes: a caller waiting for a slow exchange
    /// is not idle.
    private var answersOwed: () -> Int = { 0 }
    /// The connection was refused (timed out); nothing more is read from it.
    private(set) var failed = false

    init(requestTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.requestTimeout = requestTimeout
        self.idleTimeout = idleTimeout
    }

    /// Starts watching `connection` (again is a no-op).
    func start(_ connection: any ConnectionIO) {
        guard self.connection == nil, !failed else { return }
        self.connection = connection
        lastActivity = .now()
        arm(at: lastActivity + min(requestTimeout, idleTimeout))
    }

    /// Stops the timer (the connection closed); releases the connection.
    func stop() {
        timer?.cancel()
        timer = nil
        connection = nil
        answersOwed = { 0 }
    }

    /// From now on the connection is idle only while `handler` owes no answer.
    ///
    /// Unowned, not weak: a weak reference gives the handler a side table, and then every
    /// retain and release of it (a few per request) takes the runtime's slow path, ~250
    /// instructions of a repeated answer's ~3,700 (callgrind, twelfth round). The handler
    /// outlives every call: the connection holds it until it closes, and closing it stops
    /// this guard (`stop()`) before the timer, the only caller, can fire again.
    func countAnswersOwed(by handler: any ConnectionGuarded) {
        answersOwed = { [unowned handler] in handler.answersOwed }
    }

    /// Bytes were read. `completedRequest`: they finished at least one request;
    /// `partialRemains`: a request is left unfinished (its deadline runs from now if it
    /// began in this read, else from its first byte).
    func didRead(completedRequest: Bool, partialRemains: Bool) {
        lastActivity = .now()
        if completedRequest || requestStartedAt == nil {
            requestStartedAt = partialRemains ? lastActivity : nil
        }
    }

    /// An answer went out outside a read (after an exchange): the connection is not idle.
    func didAnswer() {
        lastActivity = .now()
    }

    private func arm(at deadline: NIODeadline) {
        guard let connection else { return }
        timer = connection.schedule(at: deadline) { [self] in
            timer = nil
            guard !failed, let connection = self.connection, connection.isActive else {
                self.connection = nil
                return
            }
            let now = NIODeadline.now()
            if let started = requestStartedAt, started + requestTimeout <= now {
                fail(
                    connection, httpStatus: 408, code: .badRequest,
                    message: "request not completed within \(requestTimeout.nanoseconds / 1_000_000_000) s; closing the connection")
                return
            }
            var idleDeadline = lastActivity + idleTimeout
            if idleDeadline <= now {
                guard answersOwed() > 0 else {
                    connection.close()
                    return
                }
                // Waiting for its answer is not idleness: look again a whole period on.
                idleDeadline = now + idleTimeout
            }
            // Never more than `requestTimeout` ahead: a request that begins before then
            // is due no earlier than that.
            var next = min(now + requestTimeout, idleDeadline)
            if let started = requestStartedAt { next = min(next, started + requestTimeout) }
            arm(at: next)
        }
    }

    private func fail(_ connection: any ConnectionIO, httpStatus: Int, code: WireErrorCode, message: String) {
        failed = true
        stop()
        connection.write(WireBytes.refusal(code, message, httpStatus: kind == .http ? httpStatus : nil, allocator: connection.allocator))
        connection.close()
    }
}

/// A protocol handler that holds its connection's `ConnectionGuard`: starts it when the
/// connection starts, stops it when the connection closes.
protocol ConnectionGuarded: ConnectionSession {
    var connection: any ConnectionIO { get }
    var connectionGuard: ConnectionGuard { get }
    /// Requests read and not yet answered.
    var answersOwed: Int { get }
}

extension ConnectionGuarded {
    func started() {
        connectionGuard.start(connection)
    }

    func closed() {
        connectionGuard.stop()
    }
}
