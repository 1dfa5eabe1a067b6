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

    /// Records `response` for `slot`; returns every response now writable, in order.
    mutating func complete(_ slot: UInt64, with response: Response) -> [Response] {
        finished[slot] = response
        var writable: [Response] = []
        while let next = finished.removeValue(forKey: nextToWrite) {
            writable.append(next)
            nextToWrite += 1
        }
        return writable
    }

    /// Requests reserved but not yet written.
    var pendingCount: Int { Int(nextSlot - nextToWrite) }
}
