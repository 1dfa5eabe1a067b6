import DetachedThread
import Glibc
import Synchronization

/// One inotify instance for the whole process, shared by every token-file watcher.
///
/// `fs.inotify.max_user_instances` is 128 per user by default, for the whole machine:
/// systemd, containerd and the kubelet already hold some of root's. A broker with an
/// instance per file identity took one more per identity, and once the limit was reached a
/// watcher fell back to re-reading its file once a poll interval (60 s) — a rotated token
/// noticed a minute late. Watches (`max_user_watches`, ~190,000 here) are plentiful.
///
/// One thread reads the instance and hands each event to the subscriptions registered for
/// its watch descriptor; two paths of one directory share one descriptor, so registrations
/// are counted and the watch is removed with the last of them.
final class SharedInotify: Sendable {
    static let shared = SharedInotify()

    private struct State {
        var descriptor: Int32 = -1
        /// Who receives the events of each watch descriptor.
        var subscribers: [Int32: [ObjectIdentifier: InotifySubscription]] = [:]
    }

    private let state = Mutex(State())

    /// Watches `directory` for `mask` on behalf of `subscription`: the watch descriptor, or
    /// why not (no instance to be had — EMFILE at the limit — or the directory cannot be
    /// watched). Tried again on the next call after a failure.
    func watch(_ directory: String, mask: UInt32, for subscription: InotifySubscription) -> Result<Int32, WatchFailure> {
        state.withLock { state in
            if state.descriptor < 0 {
                let descriptor = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
                guard descriptor >= 0 else { return .failure(WatchFailure("inotify_init1: \(String(cString: strerror(errno)))")) }
                state.descriptor = descriptor
                DetachedThread.start { [self] in readEvents(descriptor) }
            }
            // IN_MASK_ADD: a second path to the same directory must not narrow the first's mask.
            let watch = inotify_add_watch(state.descriptor, directory, mask | UInt32(IN_MASK_ADD))
            guard watch >= 0 else { return .failure(WatchFailure("inotify_add_watch(\(directory)): \(String(cString: strerror(errno)))")) }
            state.subscribers[watch, default: [:]][ObjectIdentifier(subscription)] = subscription
            return .success(watch)
        }
    }

    /// Ends `subscription`'s interest in `watch`; the kernel's watch goes with the last one.
    func unwatch(_ watch: Int32, for subscription: InotifySubscription) {
        state.withLock { state in
            guard var subscribers = state.subscribers[watch] else { return }  // already gone (IN_IGNORED)
            subscribers[ObjectIdentifier(subscription)] = nil
            if subscribers.isEmpty {
                state.subscribers[watch] = nil
                inotify_rm_watch(state.descriptor, watch)
            } else {
                state.subscribers[watch] = subscribers
            }
        }
    }

    /// The reading thread: blocks until events arrive, then hands them out. Runs for the
    /// process's lifetime (the instance is never closed).
    private func readEvents(_ descriptor: Int32) {
        var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        while true {
            ready.revents = 0
            guard poll(&ready, 1, -1) > 0 else {
                if errno != EINTR { usleep(100_000) }  // should not happen; do not spin if it does
                continue
            }
            InotifyEvents.drain(descriptor) { event, name in
                let receivers: [InotifySubscription] = state.withLock { state in
                    // A lost queue (IN_Q_OVERFLOW, descriptor -1) concerns everyone.
                    if event.mask & UInt32(IN_Q_OVERFLOW) != 0 { return state.subscribers.values.flatMap(\.values) }
                    let receivers = state.subscribers[event.wd].map { Array($0.values) } ?? []
                    // The kernel removed the watch (directory deleted, unmounted, or unwatched).
                    if event.mask & UInt32(IN_IGNORED) != 0 { state.subscribers[event.wd] = nil }
                    return receivers
                }
                for receiver in receivers { receiver.deliver(event, name: name) }
            }
        }
    }
}

/// Why a directory is not watched, in words for the log.
struct WatchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What one watcher receives from `SharedInotify`: its events, queued, and a pipe that
/// becomes readable when there are some (the watcher polls it beside its stop pipe).
final class InotifySubscription: Sendable {
    /// Readable while events are queued.
    var readyDescriptor: Int32 { signal.readFD }
    private let signal: StopSignal
    private let queue = Mutex<[(event: inotify_event, name: String)]>([])

    /// Events kept for a watcher that is slow to take them; beyond, they are replaced by one
    /// IN_Q_OVERFLOW (the watcher re-reads its file, as for the kernel's own overflow).
    static let maxQueued = 1024

    /// Nil when the process is out of file descriptors.
    init?() {
        guard let signal = StopSignal() else { return nil }
        self.signal = signal
    }

    fileprivate func deliver(_ event: inotify_event, name: String) {
        let first = queue.withLock { queue in
            let wasEmpty = queue.isEmpty
            if queue.count >= Self.maxQueued {
                var overflow = inotify_event()
                overflow.wd = -1
                overflow.mask = UInt32(IN_Q_OVERFLOW)
                queue = [(overflow, "")]
            } else {
                queue.append((event, name))
            }
            return wasEmpty
        }
        // One byte per batch: the pipe cannot fill up however many events come.
        if first { signal.fire() }
    }

    /// The events queued so far (and the pipe is no longer readable).
    func take() -> [(event: inotify_event, name: String)] {
        queue.withLock { queue in
            signal.drain()
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
    }
}
