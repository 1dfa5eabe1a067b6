import NIOCore

/// What a protocol handler needs from the connection it serves, whatever moves the bytes:
/// the broker's own epoll loop (`EpollConnection`, Unix sockets) or SwiftNIO
/// (`NIOConnectionHandler`, the loopback TCP listeners and the unit tests' embedded
/// channels).
///
/// One per connection, confined to the thread that serves it: every method is called
/// there, and every `ConnectionSession` callback comes from there.
protocol ConnectionIO: AnyObject {
    var allocator: ByteBufferAllocator { get }
    /// Queues bytes to send; they go out at the next `flush()`.
    func write(_ bytes: ByteBuffer)
    func flush()
    /// Sends what is queued, then closes (at the latest after `closeLingerTimeout`, for
    /// a peer that does not read).
    func close()
    /// Open: not closed by either side yet.
    var isActive: Bool { get }
    /// False while more than a high-water mark of written bytes waits for the peer.
    var isWritable: Bool { get }
    /// Stops (or resumes) reading from the peer; while stopped, the kernel's buffers push back.
    func setReading(_ reading: Bool)
    /// Hands the connection to another session (the sniffer, once it knows the protocol);
    /// the caller passes on what it was just given.
    func replaceSession(with session: any ConnectionSession)
    /// A function any thread may call (once) that runs `body` on this connection's thread.
    func onConnectionThread<Value: Sendable>(_ body: @escaping (Value) -> Void) -> @Sendable (Value) -> Void
    /// Runs `body` on this connection's thread at `deadline`, unless cancelled first.
    func schedule(at deadline: NIODeadline, _ body: @escaping () -> Void) -> any ScheduledCall
}

/// How long a closing connection waits at most for its peer to take what is queued.
let closeLingerTimeout = TimeAmount.seconds(10)

/// A call scheduled with `ConnectionIO.schedule`.
protocol ScheduledCall {
    func cancel()
}

/// What a connection tells the protocol handler serving it. A handler is given its
/// connection when it is made and keeps it until `closed()`; the connection keeps its
/// handler until then too.
protocol ConnectionSession: AnyObject {
    /// The connection is set up and reading.
    func started()
    /// Bytes arrived. Keeping the buffer keeps the transport from reusing its receive buffer.
    func received(_ buffer: ByteBuffer)
    /// A batch of reads ended: the moment to flush.
    func receiveBatchEnded()
    /// `isWritable` changed.
    func writabilityChanged()
    /// The peer will send nothing more (it may still read).
    func inputClosed()
    /// The server is shutting down: finish what is in flight, then close.
    func drain()
    /// The connection is gone.
    func closed()
}
