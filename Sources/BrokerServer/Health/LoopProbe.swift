public import NIOCore
import Synchronization

/// Asks every thread that serves callers to run a trivial task, and says whether all of
/// them did within a deadline: the watchdog's question "is everything that answers
/// callers alive?". A loop frozen by a debugger, blocked in a system call or spinning in
/// a handler never runs the task, and the answer is no.
public struct LoopProbe: Sendable {
    /// Runs a closure on one serving thread (an epoll loop's `execute`, an `EventLoop`'s).
    public typealias Submit = @Sendable (@escaping @Sendable () -> Void) -> Void

    let submitters: [Submit]

    /// A probe of the threads `submitters` reach, one closure each.
    public init(_ submitters: [Submit]) {
        self.submitters = submitters
    }

    /// Every loop of `group`, each running `work` before it answers (the watchdog passes
    /// a look at the cache's lock, so a deadlocked cache stops the answer too).
    public static func eventLoops(of group: any EventLoopGroup, running work: @escaping @Sendable () -> Void = {}) -> LoopProbe {
        LoopProbe(
            group.makeIterator().map { loop in
                { answer in
                    loop.execute {
                        work(); answer()
                    }
                }
            })
    }

    /// Both probes' loops.
    public static func + (lhs: LoopProbe, rhs: LoopProbe) -> LoopProbe {
        LoopProbe(lhs.submitters + rhs.submitters)
    }

    /// Whether every loop ran its task within `timeout`.
    public func allAnswer(within timeout: Duration) async -> Bool {
        guard !submitters.isEmpty else { return true }
        let round = ProbeRound(expected: submitters.count)
        let submitters = self.submitters
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    round.await(continuation)
                    for submit in submitters { submit { round.answered() } }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                round.finish(false)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}

/// One round of a probe: resumes its waiter once, with true when every loop answered,
/// or false when the deadline came first.
private final class ProbeRound: Sendable {
    private let state: Mutex<(remaining: Int, result: Bool?, waiter: CheckedContinuation<Bool, Never>?)>

    init(expected: Int) {
        state = Mutex((expected, nil, nil))
    }

    func await(_ continuation: CheckedContinuation<Bool, Never>) {
        let result = state.withLock { state -> Bool? in
            if state.result == nil { state.waiter = continuation }
            return state.result
        }
        if let result { continuation.resume(returning: result) }
    }

    func answered() {
        let done = state.withLock { state -> Bool in
            state.remaining -= 1
            return state.remaining == 0
        }
        if done { finish(true) }
    }

    func finish(_ result: Bool) {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: result)
    }
}
