// Hand-written: the Unix socket on SwiftNIO cost 7.1 µs CPU/req, on this loop 4.2–4.8 (docs/benchmarks.md, fourth round).
import CEpoll
import DetachedThread
import FoundationEssentials
import Glibc
import NIOCore
import Synchronization

/// Something registered with an `EpollLoop` for a file descriptor.
protocol EpollSource: AnyObject {
    /// The descriptor is ready (`events`: the epoll bits); called on the loop's thread.
    func ready(_ events: UInt32)
}

/// One thread serving sockets with epoll: the broker's own event loop for its Unix
/// socket. SwiftNIO serves the same protocol handlers through a channel pipeline, and its
/// per-request bookkeeping costs more than a cached answer (brief §10, docs/benchmarks.md);
/// here a readable socket is one `read`, the handler's answer one `send` or `sendmsg`.
///
/// Level-triggered. Descriptors, timers and everything registered are touched only on the
/// loop's thread; other threads hand it work with `execute`, which wakes it through an
/// eventfd.
final class EpollLoop: @unchecked Sendable {  // @unchecked: see above; `inbox` is the shared part
    private let epoll: CInt
    private let wakeup: CInt
    private var sources: [(any EpollSource)?] = []
    private var timers = TimerQueue()
    private let inbox = Mutex<(work: [@Sendable () -> Void], signalled: Bool, stopped: Bool)>(([], false, false))
    private var stopping = false
    private let finished = Latch()
    /// Reused for every read on this loop (a handler that keeps the bytes gets its own copy
    /// on write).
    var receiveBuffer: ByteBuffer
    let allocator = ByteBufferAllocator()

    /// The size of one read (NIO's largest receive buffer too).
    static let readSize = 64 * 1024

    init() throws(BrokerServerError) {
        epoll = epoll_create1(CInt(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw BrokerServerError(.bindFailed, "epoll_create1: \(String(cString: strerror(errno)))") }
        wakeup = eventfd(0, CInt(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeup >= 0 else {
            Glibc.close(epoll)
            throw BrokerServerError(.bindFailed, "eventfd: \(String(cString: strerror(errno)))")
        }
        receiveBuffer = allocator.buffer(capacity: Self.readSize)
        var event = epoll_event(events: cepoll_in(), data: epoll_data_t(fd: wakeup))
        epoll_ctl(epoll, EPOLL_CTL_ADD, wakeup, &event)
    }

    deinit {
        Glibc.close(wakeup)
        Glibc.close(epoll)
    }

    /// Starts the loop's thread.
    func start(name: String) {
        DetachedThread.start { [self] in
            cepoll_name_thread(name)
            run()
        }
    }

    /// Stops the loop once the work queued so far has run; returns when its thread is done.
    func stop() async {
        execute { [self] in stopping = true }
        try? await finished.wait()
    }

    /// Runs `work` on the loop's thread (from any thread). Dropped once the loop has stopped.
    func execute(_ work: @escaping @Sendable () -> Void) {
        let signal = inbox.withLock { inbox -> Bool in
            guard !inbox.stopped else { return false }
            inbox.work.append(work)
            defer { inbox.signalled = true }
            return !inbox.signalled
        }
        if signal {
            var one: UInt64 = 1
            _ = Glibc.write(wakeup, &one, 8)
        }
    }

    // MARK: On the loop's thread

    func register(_ source: any EpollSource, descriptor: CInt, events: UInt32) throws(BrokerServerError) {
        var event = epoll_event(events: events, data: epoll_data_t(fd: descriptor))
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, descriptor, &event) == 0 else {
            throw BrokerServerError(.connectionRefused, "epoll_ctl: \(String(cString: strerror(errno)))")
        }
        let index = Int(descriptor)
        if index >= sources.count { sources.append(contentsOf: repeatElement(nil, count: max(index + 1 - sources.count, sources.count))) }
        sources[index] = source
    }

    func modify(descriptor: CInt, events: UInt32) {
        var event = epoll_event(events: events, data: epoll_data_t(fd: descriptor))
        epoll_ctl(epoll, EPOLL_CTL_MOD, descriptor, &event)
    }

    /// Forgets `descriptor` (before it is closed: epoll would keep reporting a descriptor
    /// whose file another descriptor still holds).
    func deregister(descriptor: CInt) {
        epoll_ctl(epoll, EPOLL_CTL_DEL, descriptor, nil)
        if Int(descriptor) < sources.count { sources[Int(descriptor)] = nil }
    }

    func schedule(at deadline: NIODeadline, _ body: @escaping () -> Void) -> any ScheduledCall {
        ScheduledTimer(loop: self, id: timers.add(deadline.uptimeNanoseconds, body))
    }

    fileprivate func cancelTimer(_ id: UInt64) {
        timers.cancel(id)
    }

    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        while !stopping {
            let count = events.withUnsafeMutableBufferPointer { events in
                epoll_wait(epoll, events.baseAddress, CInt(events.count), timers.timeoutMilliseconds(now: NIODeadline.now().uptimeNanoseconds))
            }
            // EBADF, EFAULT, EINVAL: a bug, not a condition to serve on through. A loop that
            // quietly ended would strand its connections and hang shutdown; a crash lets the
            // service manager restart the daemon.
            if count < 0, errno != EINTR { fatalError("epoll_wait: \(String(cString: strerror(errno)))") }
            for index in 0..<max(Int(count), 0) {
                let descriptor = Int(events[index].data.fd)
                if descriptor == Int(wakeup) {
                    runInbox()
                } else if descriptor < sources.count, let source = sources[descriptor] {
                    source.ready(events[index].events)
                }
            }
            if timers.hasEntries {
                // One at a time: a body may schedule a timer or cancel one that is due too.
                let now = NIODeadline.now().uptimeNanoseconds
                while let body = timers.takeNextDue(now: now) { body() }
            }
        }
        inbox.withLock { $0.stopped = true }
        runInbox()
        sources.removeAll()
        finished.open()
    }

    private func runInbox() {
        var count: UInt64 = 0
        _ = Glibc.read(wakeup, &count, 8)
        let work = inbox.withLock { inbox in
            inbox.signalled = false
            defer { inbox.work.removeAll(keepingCapacity: true) }
            return inbox.work
        }
        for item in work { item() }
    }

    private struct ScheduledTimer: ScheduledCall {
        let loop: EpollLoop
        let id: UInt64
        func cancel() { loop.cancelTimer(id) }
    }
}

/// Timers of one loop: a binary heap of deadlines; a cancelled timer's entry stays in the
/// heap and is skipped when it comes up.
struct TimerQueue {
    private var heap: [(deadline: UInt64, id: UInt64)] = []
    private var bodies: [UInt64: () -> Void] = [:]
    private var nextID: UInt64 = 0
    /// The heap's first entry, known to be live: the loop asks for its timeout at every
    /// wake-up, and looking the first entry up each time was a dictionary lookup per answer.
    private var liveFirst: UInt64?

    var hasEntries: Bool { !heap.isEmpty }

    mutating func add(_ deadline: UInt64, _ body: @escaping () -> Void) -> UInt64 {
        nextID += 1
        bodies[nextID] = body
        heap.append((deadline, nextID))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].deadline < heap[parent].deadline else { break }
            heap.swapAt(child, parent)
            child = parent
        }
        return nextID
    }

    mutating func cancel(_ id: UInt64) {
        bodies[id] = nil
        if liveFirst == id { liveFirst = nil }
    }

    /// How long epoll may wait: until the earliest live deadline (rounded up to a
    /// millisecond), or for ever (-1).
    mutating func timeoutMilliseconds(now: UInt64) -> CInt {
        while let first = heap.first, first.id != liveFirst {
            if bodies[first.id] == nil { popFirst() } else { liveFirst = first.id }
        }
        guard let first = heap.first else { return -1 }
        guard first.deadline > now else { return 0 }
        return CInt(min((first.deadline - now + 999_999) / 1_000_000, UInt64(CInt.max)))
    }

    /// Removes the earliest timer due by `now` (skipping cancelled ones) and returns its body.
    mutating func takeNextDue(now: UInt64) -> (() -> Void)? {
        while let first = heap.first, first.deadline <= now {
            popFirst()
            if liveFirst == first.id { liveFirst = nil }
            if let body = bodies.removeValue(forKey: first.id) { return body }
        }
        return nil
    }

    private mutating func popFirst() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { break }
            var child = left
            if left + 1 < heap.count, heap[left + 1].deadline < heap[left].deadline { child = left + 1 }
            guard heap[child].deadline < heap[parent].deadline else { break }
            heap.swapAt(child, parent)
            parent = child
        }
    }
}
