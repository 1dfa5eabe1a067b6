/// Keeps responses in request order on a connection whose requests finish out of
/// order (a cache hit after a miss still waits its turn). Event-loop confined.
struct ResponseSequencer<Response> {
    private var nextSlot: UInt64 = 0
    private var nextToWrite: UInt64 = 0
    private var finished: [UInt64: Response] = [:]

    /// Reserves the next position.
    mutating func reserve() -> UInt64 {
        defer { nextSlot += 1 }
        return nextSlot
    }

    /// Records `response` for `slot`: returns it when it is its turn to be written
    /// (then `next()` gives those queued behind it), else keeps it and returns nil.
    mutating func complete(_ slot: UInt64, with response: Response) -> Response? {
        // The common case, the oldest request finishing first, touches no dictionary.
        guard slot == nextToWrite else {
            finished[slot] = response
            return nil
        }
        nextToWrite += 1
        return response
    }

    /// The next response in order if it has finished.
    mutating func next() -> Response? {
        guard !finished.isEmpty, let response = finished.removeValue(forKey: nextToWrite) else { return nil }
        nextToWrite += 1
        return response
    }

    /// Whether `slot`'s answer may be written right now (it is the next to write; it is then
    /// counted as written): the caller writes it without handing it over.
    mutating func writesNow(_ slot: UInt64) -> Bool {
        guard slot == nextToWrite else { return false }
        nextToWrite += 1
        return true
    }

    /// Reserves and completes `count` positions at once, for answers written in order
    /// straight away; only while nothing is pending.
    mutating func passOver(_ count: Int) {
        precondition(pendingCount == 0, "answers passed over while earlier ones are pending")
        nextSlot += UInt64(count)
        nextToWrite = nextSlot
    }

    /// Requests reserved but not yet written.
    var pendingCount: Int { Int(nextSlot - nextToWrite) }
}
