import Glibc
import NIOCore

/// A connection's last HTTP request head, kept with its bytes. A head is a function of its
/// bytes alone, so a keep-alive client sending the same head again (a poller, a benchmark)
/// gets the same result from a `memcmp` instead of a parse.
struct RememberedHead {
    /// Heads up to this long are remembered for the next (a typical one is under 200 bytes).
    static let maxBytes = 1024

    private var bytes: [UInt8] = []
    private var parsed: ParsedHead?

    /// The remembered head and its length, when `buffer` starts with its bytes.
    func match(_ buffer: ByteBuffer) -> ParsedHead? {
        guard let parsed else { return nil }
        let same = buffer.withUnsafeReadableBytes { readable in
            readable.count >= bytes.count && bytes.withUnsafeBytes { memcmp(readable.baseAddress!, $0.baseAddress!, $0.count) == 0 }
        }
        return same ? parsed : nil
    }

    /// Remembers `parsed`, read from the start of `buffer` (unless longer than `maxBytes`).
    mutating func remember(_ parsed: ParsedHead, from buffer: ByteBuffer) {
        guard parsed.length <= Self.maxBytes else { return }
        bytes.removeAll(keepingCapacity: true)
        bytes.append(contentsOf: buffer.readableBytesView.prefix(parsed.length))
        self.parsed = parsed
    }
}
