import CEpoll
import Glibc
import NIOCore

/// A connection served by an `EpollLoop`: reads go to its `ConnectionSession`, what the
/// session writes is sent at its `flush()` — with one `send`, or one `sendmsg` for several
/// answers — and whatever the socket does not take at once waits for `EPOLLOUT`.
///
/// Confined to its loop's thread.
final class EpollConnection: ConnectionIO, EpollSource {
    private let descriptor: CInt
    private let loop: EpollLoop
    private var session: (any ConnectionSession)?
    private let onClose: () -> Void
    private var outbound = CircularBuffer<ByteBuffer>(initialCapacity: 4)
    private var outboundBytes = 0
    /// The epoll bits asked for now.
    private var interest: UInt32
    private var reading = true
    private var inputEnded = false
    private var waitingToWrite = false
    private var closing = false
    private var closed = false
    private var writable = true
    private var lingerTimer: (any ScheduledCall)?

    /// Above this many bytes waiting to be sent the connection is not writable; below the
    /// low mark it is again (NIO's defaults).
    static let highWaterMark = 64 * 1024
    static let lowWaterMark = 32 * 1024
    /// Reads in a row before the loop serves others (NIO's `maxMessagesPerRead`).
    static let readsPerWakeup = 4

    /// Registers `descriptor` (a connected, non-blocking socket) with `loop` for reading;
    /// the connection owns it from now on. `onClose` runs once it is closed.
    init(descriptor: CInt, loop: EpollLoop, onClose: @escaping () -> Void) throws(BrokerServerError) {
        self.descriptor = descriptor
        self.loop = loop
        self.onClose = onClose
        interest = cepoll_in()
        try loop.register(self, descriptor: descriptor, events: interest)
    }

    /// Gives the connection its session and starts it.
    func start(_ session: any ConnectionSession) {
        self.session = session
        session.started()
    }

    /// The server is shutting down (see `ConnectionSession.drain()`). Requests already in
    /// the socket are read first, so they are answered rather than cut off by the close.
    func drain() {
        if reading, !inputEnded, !closing, !closed { receive() }
        session?.drain()
    }

    // MARK: Events

    func ready(_ events: UInt32) {
        if events & cepoll_err() != 0 {
            // The peer is gone (both directions) or the socket failed: nothing more can be
            // sent, and the condition would be reported again and again.
            return closeNow()
        }
        if events & cepoll_out() != 0 { sendQueued() }
        if events & cepoll_in() != 0, reading, !inputEnded, !closed { receive() }
    }

    private func receive() {
        var endOfInput = false
        var received = false
        for _ in 0..<Self.readsPerWakeup {
            loop.receiveBuffer.clear()
            var result = 0
            loop.receiveBuffer.writeWithUnsafeMutableBytes(minimumWritableBytes: EpollLoop.readSize) { space in
                result = Glibc.read(descriptor, space.baseAddress, space.count)
                return max(result, 0)
            }
            if result > 0 {
                received = true
                session?.received(loop.receiveBuffer)
                guard !closed, reading, !closing, result == EpollLoop.readSize else { break }
                continue
            }
            if result == 0 {
                endOfInput = true
                break
            }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { break }
            return closeNow()  // ECONNRESET and the like
        }
        if received, !closed { session?.receiveBatchEnded() }
        if endOfInput, !closed {
            inputEnded = true
            updateInterest()
            session?.inputClosed()
        }
    }

    // MARK: ConnectionIO

    var allocator: ByteBufferAllocator { loop.allocator }

    func write(_ bytes: ByteBuffer) {
        guard !closed, bytes.readableBytes > 0 else { return }
        outbound.append(bytes)
        outboundBytes += bytes.readableBytes
        if writable, outboundBytes > Self.highWaterMark { writable = false }
    }

    func flush() {
        guard !closed, !waitingToWrite, !outbound.isEmpty else { return }
        sendQueued()
    }

    func close() {
        guard !closed, !closing else { return }
        closing = true
        updateInterest()
        if outbound.isEmpty { return closeNow() }
        sendQueued()
        guard !closed else { return }
        lingerTimer = loop.schedule(at: .now() + closeLingerTimeout) { [self] in closeNow() }
    }

    var isActive: Bool { !closed && !closing }
    var isWritable: Bool { writable }

    func setReading(_ reading: Bool) {
        guard self.reading != reading else { return }
        self.reading = reading
        updateInterest()
    }

    func replaceSession(with session: any ConnectionSession) {
        self.session = session
    }

    func onConnectionThread<Value: Sendable>(_ body: @escaping (Value) -> Void) -> @Sendable (Value) -> Void {
        let loop = self.loop
        let bound = LoopBound(body)
        return { value in loop.execute { bound.value(value) } }
    }

    func schedule(at deadline: NIODeadline, _ body: @escaping () -> Void) -> any ScheduledCall {
        loop.schedule(at: deadline, body)
    }

    // MARK: Sending

    /// Sends what is queued until it is all out or the socket is full.
    private func sendQueued() {
        while !outbound.isEmpty {
            let sent = outbound.count == 1 ? sendOne() : sendMany()
            if sent < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    if !waitingToWrite {
                        waitingToWrite = true
                        updateInterest()
                    }
                    return noteWritability()
                }
                return closeNow()  // EPIPE, ECONNRESET: the peer is gone
            }
            consume(sent)
        }
        if waitingToWrite {
            waitingToWrite = false
            updateInterest()
        }
        noteWritability()
        if closing, !closed, outbound.isEmpty { closeNow() }
    }

    /// Writable again once what waits is below the low-water mark (the session may then
    /// read again).
    private func noteWritability() {
        guard !writable, !closed, outboundBytes < Self.lowWaterMark else { return }
        writable = true
        session?.writabilityChanged()
    }

    private func sendOne() -> Int {
        outbound[outbound.startIndex].withUnsafeReadableBytes { bytes in cepoll_send(descriptor, bytes.baseAddress, bytes.count) }
    }

    /// Up to 64 buffers in one `sendmsg`. The pointers stay valid after each closure
    /// returns: `outbound` holds the buffers and nothing changes them until they are sent.
    private func sendMany() -> Int {
        let count = min(outbound.count, 64)
        return withUnsafeTemporaryAllocation(of: iovec.self, capacity: count) { vectors in
            var index = outbound.startIndex
            for slot in 0..<count {
                vectors[slot] = outbound[index].withUnsafeReadableBytes {
                    iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count)
                }
                index = outbound.index(after: index)
            }
            return cepoll_writev(descriptor, vectors.baseAddress, CInt(count))
        }
    }

    private func consume(_ sent: Int) {
        var left = sent
        outboundBytes -= sent
        while left > 0 {
            let first = outbound[outbound.startIndex].readableBytes
            if left >= first {
                outbound.removeFirst()
                left -= first
            } else {
                outbound[outbound.startIndex].moveReaderIndex(forwardBy: left)
                left = 0
            }
        }
    }

    // MARK: Closing

    private func updateInterest() {
        guard !closed else { return }
        var wanted: UInt32 = 0
        if reading, !inputEnded, !closing { wanted |= cepoll_in() }
        if waitingToWrite { wanted |= cepoll_out() }
        guard wanted != interest else { return }
        interest = wanted
        loop.modify(descriptor: descriptor, events: wanted)
    }

    /// Closes at once, dropping what is not sent.
    func closeNow() {
        guard !closed else { return }
        closed = true
        lingerTimer?.cancel()
        lingerTimer = nil
        loop.deregister(descriptor: descriptor)
        Glibc.close(descriptor)
        outbound.removeAll()
        outboundBytes = 0
        let ended = session
        session = nil
        ended?.closed()
        onClose()
    }
}

/// A value only ever used on one loop's thread, carried through a `Sendable` closure that
/// hops there (the loop's `execute`).
final class LoopBound<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
