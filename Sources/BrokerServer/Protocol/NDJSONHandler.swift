import Glibc
import NIOCore
import TokenBrokerProtocol

/// Serves NDJSON requests on one connection: one JSON object per line in, one per
/// line out, in request order, many per connection. A bad line gets an error and
/// the connection stays usable; an oversized line gets `too_large` and a close.
///
/// It splits the byte stream at `\n` itself, answering each line straight from the
/// read buffer; only an unfinished last line is kept (copied) until the next read, and
/// the rest of a read while the client does not take its answers (`ReadGate`).
/// Lines longer than `maxLineBytes` are refused without being buffered.
final class NDJSONHandler: ConnectionGuarded {
    let connection: any ConnectionIO
    private let maxLineBytes: Int
    private var sequencer = ResponseSequencer<NDJSONAnswer>()
    /// In-order answers not yet handed to the connection: written as one buffer before
    /// anything flushes (`writeAnswers`).
    private var batch = AnswerBatch()
    var answersOwed: Int { sequencer.pendingCount }
    /// Serving, finishing, draining (later requests get `shutting_down`), refused (a line
    /// was too long: nothing more is read) or closed; and whether answers await a flush.
    private var lifecycle = ConnectionLifecycle()
    private var readGate = ReadGate()
    /// Bytes read and not served yet: the start of a line whose `\n` has not arrived, and
    /// before it, while `readGate.holdingRequests`, the whole lines of a read held back.
    private var unserved: ByteBuffer?
    /// Answers each request (the connection's remembered answer, or the responder's).
    private var dispatcher: RequestDispatcher

    /// Told what is read, for the connection's timeouts.
    let connectionGuard: ConnectionGuard

    init(
        connection: any ConnectionIO, responder: any BrokerResponder, peer: PeerCredentials, maxLineBytes: Int = WireProtocol.maxRequestBytes,
        connectionGuard: ConnectionGuard
    ) {
        self.connection = connection
        self.dispatcher = RequestDispatcher(responder: responder, peer: peer, newline: true)
        self.maxLineBytes = maxLineBytes
        self.connectionGuard = connectionGuard
        connectionGuard.kind = .ndjson  // how it answers a timeout
    }

    func received(_ bytes: ByteBuffer) {
        guard lifecycle.reads, !connectionGuard.failed else { return }
        var buffer = bytes
        if readGate.holdingRequests, var held = unserved {
            // More of a read that came after serving stopped (SwiftNIO ends its read loop
            // after reading pauses): held too.
            unserved = nil
            held.writeBuffer(&buffer)
            unserved = held
            return
        }
        // Bytes already known to hold no `\n` (the unfinished line), not searched again.
        var searched = 0
        let ownsBuffer = unserved != nil
        if var unfinished = unserved {
            unserved = nil
            searched = unfinished.readableBytes
            unfinished.writeBuffer(&buffer)
            buffer = unfinished
        }
        serveLines(buffer, searched: searched, ownsBuffer: ownsBuffer)
    }

    /// Answers the whole lines in `input` and keeps the rest in `unserved`: an unfinished
    /// line, or (`mayHold`) the lines after the connection stopped being writable too.
    /// `searched`: leading bytes known to hold no `\n`; `ownsBuffer`: `input` is not the
    /// connection's receive buffer.
    private func serveLines(_ input: ByteBuffer, searched alreadySearched: Int, ownsBuffer: Bool, mayHold: Bool = true) {
        var buffer = input
        var searched = alreadySearched
        var completedLine = false
        defer {
            // Held lines are complete: no request deadline runs for them.
            connectionGuard.didRead(completedRequest: completedLine, partialRemains: unserved != nil && !readGate.holdingRequests)
        }
        while let newline = Self.firstNewline(in: buffer, after: searched) {
            searched = 0
            completedLine = true
            let length = newline - buffer.readerIndex
            guard length <= maxLineBytes else { return refuseLine() }
            let line = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            if !serveRun(of: line, in: &buffer) {
                serve(line, ahead: ReadAhead(bytes: buffer.readableBytes, lineBytes: length + 1))
            }
            if mayHold, buffer.readableBytes > 0, readGate.holdsRest(connection) { break }
        }
        if !readGate.holdingRequests {
            guard buffer.readableBytes <= maxLineBytes else { return refuseLine() }
        }
        guard buffer.readableBytes > 0 else { return }
        if ownsBuffer {
            // Already ours: keep growing it (a line sent a byte at a time is not copied again and again).
            buffer.discardReadBytes()
            unserved = buffer
        } else {
            // A copy, so the connection's receive buffer is not pinned (and can be reused).
            var unfinished = connection.allocator.buffer(capacity: max(buffer.readableBytes, 256))
            unfinished.writeBuffer(&buffer)
            unserved = unfinished
        }
    }

    /// The buffer index of the first `\n` in `buffer`'s readable bytes after the first `skipped`.
    private static func firstNewline(in buffer: ByteBuffer, after skipped: Int) -> Int? {
        buffer.withUnsafeReadableBytes { bytes in
            guard bytes.count > skipped, let found = memchr(bytes.baseAddress! + skipped, CInt(UInt8(ascii: "\n")), bytes.count - skipped) else {
                return nil
            }
            return buffer.readerIndex + (UnsafeRawPointer(found) - bytes.baseAddress!)
        }
    }

    /// Answers `line` and the copies of it that follow in `buffer` (consumed) from the
    /// connection's remembered answer, when `line` is the very line that answer was for and
    /// no earlier answer is pending: one check and one account (audit, metrics) for the
    /// whole run, the answers copied into the batch, about a batch's worth at a time so that
    /// the read gate still looks between runs. A client pipelining one request (as
    /// `scripts/bench` does) then costs a `memcmp` per line. False when it does not apply.
    private func serveRun(of line: ByteBuffer, in buffer: inout ByteBuffer) -> Bool {
        guard sequencer.pendingCount == 0, lifecycle.servesRequests, lifecycle.state != .draining, let memo = dispatcher.memo,
            memo.line == line
        else { return false }
        let most = max(1, AnswerBatch.handOverBytes / max(1, memo.encoded.readableBytes))
        let count = 1 + Self.copies(of: line, startingAt: buffer, most: most - 1)
        let id = memo.request.id
        guard let outcome = dispatcher.repeating(memo, id: id, answers: count) else { return false }
        buffer.moveReaderIndex(forwardBy: (count - 1) * (line.readableBytes + 1))
        let following = ReadAhead(bytes: buffer.readableBytes, lineBytes: line.readableBytes + 1).lines
        guard case .remembered(let memo) = outcome else {
            for _ in 0..<count { deliver(outcome, to: sequencer.reserve(), id: id, ahead: .nothing) }
            return true
        }
        sequencer.passOver(count)
        guard let id else {
            if let full = batch.add(memo.encoded, times: count, following: following, allocator: connection.allocator) { write(full) }
            return true
        }
        for _ in 0..<count {
            if let full = batch.add(memo, id: id, following: following, allocator: connection.allocator) { write(full) }
        }
        return true
    }

    /// How many copies of `line`, each with its `\n`, `buffer` starts with (at most `most`).
    private static func copies(of line: ByteBuffer, startingAt buffer: ByteBuffer, most: Int) -> Int {
        let stride = line.readableBytes + 1
        return line.withUnsafeReadableBytes { line in
            buffer.withUnsafeReadableBytes { rest in
                var (count, offset) = (0, 0)
                while count < most, rest.count - offset >= stride, rest[offset + stride - 1] == UInt8(ascii: "\n"),
                    memcmp(rest.baseAddress! + offset, line.baseAddress!, line.count) == 0
                {
                    count += 1
                    offset += stride
                }
                return count
            }
        }
    }

    /// Serves the lines held while the connection was not writable, then reads again
    /// (`ReadGate.resumeWhenWritable` runs it).
    private func serveHeld() {
        guard readGate.release(connection), lifecycle.reads, !connectionGuard.failed, connection.isActive, let held = unserved else { return }
        unserved = nil
        serveLines(held, searched: 0, ownsBuffer: true)
        receiveBatchEnded()
    }

    private func refuseLine() {
        unserved = nil
        readGate.forgetHeld()
        guard lifecycle.refuse() else { return }
        let slot = sequencer.reserve()
        complete(slot, .failure(id: nil, WireError(code: .tooLarge, message: "request line exceeds \(maxLineBytes) bytes; closing the connection")))
    }

    /// Answers one line (without its `\n`; a trailing `\r` is left for the JSON parser to ignore).
    private func serve(_ line: ByteBuffer, ahead: ReadAhead = .nothing) {
        guard line.readableBytesView.contains(where: { !Self.isWhitespace($0) }) else { return }  // blank lines are ignored
        if lifecycle.state == .draining {
            // Shutting down: a request sent on this connection now is answered, not dropped,
            // so the client knows to retry (the next process is already taking connections).
            let slot = sequencer.reserve()
            let id: RequestID? =
                switch WireCoding.decodeRequest(line) {
                case .success(let request): request.id
                case .failure(let failure): failure.id
                }
            let error = WireError(code: .shuttingDown, message: "the broker is restarting or stopping; retry on a new connection", retryable: true)
            complete(slot, .failure(id: id, error))
            return
        }
        guard lifecycle.servesRequests else { return }
        let slot = sequencer.reserve()
        // The very line the remembered answer was for (a client repeating itself, `id` and
        // all) is not decoded again.
        if let memo = dispatcher.memo, memo.line == line, let again = dispatcher.repeating(memo, id: memo.request.id) {
            return deliver(again, to: slot, id: memo.request.id, ahead: ahead)
        }
        switch WireCoding.decodeRequest(line) {
        case .failure(let failure):
            complete(slot, .failure(id: failure.id, failure.error), ahead: ahead)
        case .success(let request):
            deliver(dispatcher.dispatch(request, line: line, allocator: connection.allocator), to: slot, id: request.id, ahead: ahead)
        }
    }

    /// Sends the answer to the request with `id` in `slot`, now or when its exchange ends.
    private func deliver(_ outcome: RequestDispatcher.Outcome, to slot: UInt64, id: RequestID?, ahead: ReadAhead) {
        switch outcome {
        case .remembered(let memo):
            complete(slot, .remembered(memo, id: id), ahead: ahead)
        case .response(let response):
            complete(slot, response, ahead: ahead)
        case .exchange(let ticket):
            ticket.wait(
                connection.onConnectionThread { (response: BrokerResponse) in
                    self.complete(slot, response)
                    self.writeAnswers()
                    self.connectionGuard.didAnswer()
                    self.connection.perform(self.lifecycle.settle(pending: self.sequencer.pendingCount, open: self.connection.isActive))
                    self.readGate.update(self.connection, pending: self.sequencer.pendingCount)
                })
        }
    }

    func receiveBatchEnded() {
        writeAnswers()
        connection.perform(lifecycle.readBatchEnded(pending: sequencer.pendingCount, open: connection.isActive))
        readGate.update(connection, pending: sequencer.pendingCount)
    }

    func writabilityChanged() {
        readGate.resumeWhenWritable(connection) { [self] in serveHeld() }
        readGate.update(connection, pending: sequencer.pendingCount)
    }

    func inputClosed() {
        if readGate.holdingRequests, let held = unserved {
            // The peer finished sending: what it sent is answered now, held or not.
            readGate.forgetHeld()
            unserved = nil
            serveLines(held, searched: 0, ownsBuffer: true, mayHold: false)
        }
        if let unfinished = unserved {
            // A last line without `\n` before EOF still counts: `printf '{…}' | socat …` works.
            unserved = nil
            serve(unfinished)
        }
        writeAnswers()
        // The peer finished sending: answer what is pending, then close.
        lifecycle.finish()
        connection.perform(lifecycle.settle(pending: sequencer.pendingCount, open: connection.isActive))
    }

    func drain() {
        // Shutting down: answer what is pending, then close. Held lines are dropped, as
        // lines still in the socket are: the client did not take its answers.
        if readGate.holdingRequests {
            readGate.forgetHeld()
            unserved = nil
        }
        writeAnswers()
        lifecycle.drain()
        connection.perform(lifecycle.settle(pending: sequencer.pendingCount, open: connection.isActive))
    }

    private func complete(_ slot: UInt64, _ response: BrokerResponse, ahead: ReadAhead = .nothing) {
        complete(slot, .line(WireCoding.encode(response, allocator: connection.allocator, newline: true)), ahead: ahead)
    }

    /// Queues the answer in `slot`, and those waiting behind it, into `batch`.
    /// (`ahead`: what follows in the read, to size the batch's buffer.)
    private func complete(_ slot: UInt64, _ answer: NDJSONAnswer, ahead: ReadAhead = .nothing) {
        guard var next = sequencer.complete(slot, with: answer) else { return }
        repeat {
            switch next {
            case .line(let bytes):
                if let full = batch.add(bytes, following: ahead.lines, allocator: connection.allocator) { write(full) }
            case .remembered(let memo, let id?):
                if let full = batch.add(memo, id: id, following: ahead.lines, allocator: connection.allocator) { write(full) }
            case .remembered(let memo, id: nil):
                // The memo's own bytes, unchanged: sent as they are (one more iovec), not
                // copied. Copying them cost more than the iovec saves (docs/benchmarks.md).
                if !batch.isEmpty { writeAnswers() }
                write(memo.encoded)
            }
            guard let after = sequencer.next() else { break }
            next = after
        } while true
    }

    /// Hands the batch's answers to the connection (before it is flushed or closed).
    private func writeAnswers() {
        if let answers = batch.take() { write(answers) }
    }

    private func write(_ answers: ByteBuffer) {
        connection.write(answers)
        lifecycle.wrote()
    }

    func closed() {
        readGate.forgetHeld()  // the scheduled resumption holds this handler
        connectionGuard.stop()
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }
}
