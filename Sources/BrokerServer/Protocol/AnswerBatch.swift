import NIOCore
import TokenBrokerProtocol

/// An NDJSON answer as the handler queues it: bytes already encoded, or the connection's
/// remembered answer with the request's `id`, spliced in only when it is written (straight
/// into the batch's buffer: no buffer of its own).
enum NDJSONAnswer {
    case line(ByteBuffer)
    case remembered(AnswerMemo, id: RequestID?)
}

/// What follows the line being answered in its read: about how many more answers the
/// batch will get (divided only when a batch allocates its buffer).
struct ReadAhead {
    var bytes = 0
    var lineBytes = 1
    var lines: Int { bytes / lineBytes }
    static let nothing = ReadAhead()
}

/// The in-order answers of one read batch gathered into one outgoing buffer: one
/// allocation and one iovec per batch instead of one per pipelined answer (issue 20).
/// An answer alone is handed over as it is, so a client asking one request at a time
/// costs what it did. (The memo's bytes without an `id` are not gathered at all: the
/// handler sends them as they are, shared, rather than copy them.)
///
/// The handler takes the buffer (`take`) before anything flushes or closes the
/// connection: answers gathered while a read is handled are written when the transport
/// ends the read batch (`receiveBatchEnded`), or at `inputClosed`/`drain`, which every
/// transport calls after `received`.
struct AnswerBatch {
    /// Nil, one answer's own bytes (shared: copied before anything is appended), or a
    /// buffer allocated here (appended to in place).
    private var buffer: ByteBuffer?
    private var gathering = false

    var isEmpty: Bool { buffer == nil }

    /// A batch this large is handed over and a new one started: one buffer does not grow
    /// far past what the socket takes at once (a client pipelining thousands of requests
    /// in one read).
    static let handOverBytes = 64 * 1024

    /// Adds an answer encoded for its request (`following`: about how many more answers
    /// this batch will get, to size the buffer once instead of growing it). Returns a full
    /// buffer to write now.
    mutating func add(_ bytes: ByteBuffer, following: @autoclosure () -> Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard buffer != nil else {
            buffer = bytes
            return nil
        }
        reserve(bytes.readableBytes, following: following(), allocator: allocator)
        buffer!.writeImmutableBuffer(bytes)
        return handOverIfFull()
    }

    /// Adds `bytes` `times` times over (a run of identical answers: copied, as `floor.c`
    /// copies its answer into its write buffer).
    mutating func add(_ bytes: ByteBuffer, times: Int, following: Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard times > 1 else { return add(bytes, following: following, allocator: allocator) }
        reserve(bytes.readableBytes, following: times - 1 + following, allocator: allocator)
        let size = bytes.readableBytes
        bytes.withUnsafeReadableBytes { source in
            _ = buffer!.writeWithUnsafeMutableBytes(minimumWritableBytes: size * times) { target in
                for copy in 0..<times { (target.baseAddress! + copy * size).copyMemory(from: source.baseAddress!, byteCount: size) }
                return size * times
            }
        }
        return handOverIfFull()
    }

    /// Adds `memo`'s answer with `id` spliced in, written straight into the batch's buffer.
    mutating func add(_ memo: AnswerMemo, id: RequestID, following: @autoclosure () -> Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        reserve(memo.encoded.readableBytes + WireCoding.splicedIDBytes(id), following: following(), allocator: allocator)
        if !WireCoding.write(id, encodedWithoutID: memo.encoded, to: &buffer!) {
            // An `id` that needs escaping: the general encoder.
            buffer!.writeImmutableBuffer(memo.answer(id: id, allocator: allocator))
        }
        return handOverIfFull()
    }

    private mutating func handOverIfFull() -> ByteBuffer? {
        guard buffer!.readableBytes >= Self.handOverBytes else { return nil }
        return take()
    }

    /// What is gathered, and the batch starts anew.
    mutating func take() -> ByteBuffer? {
        defer {
            buffer = nil
            gathering = false
        }
        return buffer
    }

    /// Makes `buffer` one of ours with room for `bytes` more (and, when new, for the
    /// answers expected to follow).
    private mutating func reserve(_ bytes: Int, following: @autoclosure () -> Int, allocator: ByteBufferAllocator) {
        guard !gathering else { return }  // ours: grows in place when it must
        gathering = true
        let held = buffer?.readableBytes ?? 0
        let expected = held + bytes * (1 + min(following(), 64))
        var gathered = allocator.buffer(capacity: min(max(expected, held + bytes), Self.handOverBytes + bytes))
        if var held = buffer { gathered.writeBuffer(&held) }
        buffer = gathered
    }
}
