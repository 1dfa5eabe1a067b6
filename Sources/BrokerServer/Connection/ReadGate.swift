import NIOCore

/// Stops reading from a client that sends faster than it reads its answers.
///
/// Without it, a client writing requests and never reading would make the daemon
/// queue answers (about 1.4 KiB per token) without bound. Reading pauses while the
/// socket is not writable or too many answers are pending, and resumes once the
/// client has caught up; the kernel's buffers then push back on the client.
///
/// Within one read too: a read is up to 256 KiB, and a handler that answered all of it
/// at once queued ~14 MB for one connection sending two-byte lines (each answered with a
/// ~110-byte error), and served that connection alone meanwhile. So a handler stops
/// serving a read's requests once the connection is not writable (`holdsRest`), keeps the
/// rest (`holdingRequests`), and serves it, before reading more, once the connection is
/// writable again — scheduled after the events at hand (`resumeWhenWritable`), so that
/// other connections are served in between.
struct ReadGate {
    /// Answers pending on one connection before reading pauses.
    static let maximumPending = 256
    private var paused = false
    /// Whether the handler holds read requests that it has not served yet.
    private(set) var holdingRequests = false
    private var resumption: (any ScheduledCall)?

    mutating func update(_ connection: any ConnectionIO, pending: Int) {
        let writable = connection.isWritable
        if !paused, holdingRequests || pending >= Self.maximumPending || !writable {
            pause(connection)
        } else if paused, !holdingRequests, writable, pending < Self.maximumPending / 2 {
            paused = false
            connection.setReading(true)
        }
    }

    /// Whether the handler stops serving the requests of a read here and holds the rest:
    /// true once the connection is not writable (reading pauses at once).
    mutating func holdsRest(_ connection: any ConnectionIO) -> Bool {
        guard !connection.isWritable else { return false }
        holdingRequests = true
        pause(connection)
        return true
    }

    /// From `writabilityChanged`: once the connection is writable, `serveHeld` runs on the
    /// connection's thread after the events at hand (it calls `release` first).
    mutating func resumeWhenWritable(_ connection: any ConnectionIO, _ serveHeld: @escaping () -> Void) {
        guard holdingRequests, resumption == nil, connection.isWritable else { return }
        resumption = connection.schedule(at: .now(), serveHeld)
    }

    /// Whether the held requests are to be served now (they may be held again); false
    /// while the connection is not writable (a later `resumeWhenWritable` tries again).
    mutating func release(_ connection: any ConnectionIO) -> Bool {
        resumption = nil
        guard holdingRequests, connection.isWritable else { return false }
        holdingRequests = false
        return true
    }

    /// The held requests are served now whatever the connection's state (the peer finished
    /// sending), or dropped (the connection is closing): nothing is held any more.
    mutating func forgetHeld() {
        resumption?.cancel()
        resumption = nil
        holdingRequests = false
    }

    private mutating func pause(_ connection: any ConnectionIO) {
        guard !paused else { return }
        paused = true
        connection.setReading(false)
    }
}
