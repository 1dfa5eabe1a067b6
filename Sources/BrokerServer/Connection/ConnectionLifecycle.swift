/// Where a connection is in its life, seen from the protocol handler serving it: one
/// state and the transitions between them, each returning what the handler must do
/// (flush, close), in the manner of AsyncHTTPClient's `HTTP1ConnectionStateMachine`. It
/// does no I/O, so it is tested without sockets (`ConnectionLifecycleTests`).
///
/// A connection serves requests until the peer finishes sending or asks to close, the
/// server drains it, or it sends something that cannot be read; then it answers what is
/// pending and closes.
struct ConnectionLifecycle {
    enum State: Equatable {
        /// Reading requests and answering them.
        case serving
        /// No new request is taken (the peer finished sending, or asked to close): the
        /// pending answers go out, then the connection closes.
        case finishing
        /// The server is shutting down: requests still arriving are answered
        /// `shutting_down`; the pending answers go out, then the connection closes.
        case draining
        /// A request could not be read (too large, malformed): nothing more is read; the
        /// pending answers (the refusal last) go out, then the connection closes.
        case refused
        /// Closed by the handler.
        case closed
    }

    /// What the handler does after a transition.
    enum Action: Equatable {
        case none
        case flush
        /// Flush what was written (if anything), then close.
        case close(flushFirst: Bool)
    }

    private(set) var state = State.serving
    /// Answers written since the last flush.
    private var unflushed = false
    /// Inside a batch of reads: answers wait for the flush at its end.
    private(set) var inReadBatch = false

    /// Whether a request read now is served (else it is dropped, or answered
    /// `shutting_down` while draining).
    var servesRequests: Bool { state == .serving }

    /// Whether bytes read now are looked at at all.
    var reads: Bool { state == .serving || state == .finishing || state == .draining }

    /// Whether an answer written now may say the connection stays open (HTTP keep-alive).
    var keepsOpen: Bool { state == .serving }

    /// Bytes arrived: answers written until `readBatchEnded` go out with one flush.
    mutating func readBatchBegan() {
        inReadBatch = true
    }

    /// An answer was written (not flushed yet).
    mutating func wrote() {
        unflushed = true
    }

    /// The peer finished sending, or a request asked to close: no new requests.
    mutating func finish() {
        if state == .serving { state = .finishing }
    }

    /// The server drains the connection.
    mutating func drain() {
        if state == .serving || state == .finishing { state = .draining }
    }

    /// A request could not be read; returns whether its refusal is to be sent (not when
    /// the connection was already winding down: its peer is owed nothing new).
    mutating func refuse() -> Bool {
        defer { if state != .closed { state = .refused } }
        return state == .serving
    }

    /// The end of a batch of reads (or an answer that arrived outside one): flush, and
    /// close once nothing more is owed.
    mutating func readBatchEnded(pending: Int, open: Bool) -> Action {
        inReadBatch = false
        return settle(pending: pending, open: open)
    }

    /// An answer was completed: inside a read batch it waits for the batch's flush (but a
    /// connection with nothing more owed still closes); outside one it goes out now.
    mutating func answered(pending: Int, open: Bool) -> Action {
        guard inReadBatch else { return settle(pending: pending, open: open) }
        return closeIfDone(pending: pending, open: open) ?? .none
    }

    /// Flushes what was written; closes once nothing more is owed.
    mutating func settle(pending: Int, open: Bool) -> Action {
        if let close = closeIfDone(pending: pending, open: open) { return close }
        guard unflushed else { return .none }
        unflushed = false
        return .flush
    }

    private mutating func closeIfDone(pending: Int, open: Bool) -> Action? {
        guard state == .finishing || state == .draining || state == .refused, pending == 0, open else { return nil }
        state = .closed
        defer { unflushed = false }
        return .close(flushFirst: unflushed)
    }
}

extension ConnectionIO {
    /// Does what a `ConnectionLifecycle` transition asks.
    func perform(_ action: ConnectionLifecycle.Action) {
        switch action {
        case .none:
            break
        case .flush:
            flush()
        case .close(let flushFirst):
            if flushFirst { flush() }
            close()
        }
    }
}
