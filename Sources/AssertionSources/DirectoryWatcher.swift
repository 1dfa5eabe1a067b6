import Glibc

/// Waits, on a thread of its own, for changes that may affect one file: inotify on the
/// file's directory (a watch on the process's one instance, `SharedInotify`), with a
/// timeout that doubles as the poll fallback.
///
/// Why a dedicated thread blocked in `poll(2)` rather than a Task: the wait is
/// indefinite, and a blocking call on the cooperative pool would starve it (2 cores
/// here means 2 executor threads). Polling a non-blocking fd from a Task with sleeps
/// would add up to one sleep of latency and wake the process all day. A blocked
/// thread costs nothing while idle and wakes within microseconds of the event; a
/// self-pipe lets `run()` cancellation wake it at once.
///
/// Not `Sendable`: it is created and used on the watcher thread only, except for
/// `StopSignal`, which is.
final class DirectoryWatcher {
    /// What ended a wait.
    enum Outcome: Equatable {
        /// Something relevant changed in the directory (or events were lost): re-read now.
        case changed
        /// Nothing happened within the timeout (or there is no watch): re-read as a fallback.
        case timedOut
        /// Only unrelated entries of the directory changed: keep waiting.
        case unrelated
        /// The owner asked the watcher to stop.
        case stopped
    }

    /// The events that can change what the path resolves to: kubelet's `..data` swap
    /// (IN_MOVED_TO), a rewrite (IN_CLOSE_WRITE), delete + create, a rename onto the
    /// file, and a chmod (IN_ATTRIB, e.g. fixing "permission denied").
    static let mask =
        UInt32(IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_ATTRIB)
        | UInt32(IN_DELETE_SELF | IN_MOVE_SELF)

    /// After the first event, how long to wait for the burst to settle (a delete is
    /// followed by a create and a write) so the file is read once, complete.
    static let settleMilliseconds: Int32 = 15

    let directory: String
    private let fileName: String
    private let stop: StopSignal
    /// Where `SharedInotify` queues this watcher's events (made at the first watch).
    private var subscription: InotifySubscription?
    private var watchDescriptor: Int32 = -1

    /// Prepares a watcher for `fileName` inside `directory`; nothing is opened until `wait`.
    init(directory: String, fileName: String, stop: StopSignal) {
        self.directory = directory
        self.fileName = fileName
        self.stop = stop
    }

    deinit {
        if watchDescriptor >= 0, let subscription { SharedInotify.shared.unwatch(watchDescriptor, for: subscription) }
    }

    /// Whether the directory is currently watched (false before it exists, or without inotify).
    var isWatching: Bool { watchDescriptor >= 0 }

    /// Tries to (re)establish the watch. Returns true when a new watch was just added:
    /// the caller must then re-read, since the file may have changed while unwatched.
    func ensureWatch() -> Bool {
        if watchDescriptor >= 0 { return false }
        if subscription == nil {
            subscription = InotifySubscription()
            guard subscription != nil else {
                watchFailure = "pipe: \(String(cString: strerror(errno)))"
                return false
            }
        }
        // No instance (EMFILE at fs.inotify.max_user_instances, or no inotify) or no
        // directory: poll only, and try again next time.
        switch SharedInotify.shared.watch(directory, mask: Self.mask, for: subscription!) {
        case .success(let watch):
            watchDescriptor = watch
            watchFailure = nil
            return true
        case .failure(let failure):
            watchFailure = failure.description
            return false
        }
    }

    /// Why the last attempt to watch failed (nil once watching, or before any attempt).
    private(set) var watchFailure: String?

    /// Blocks until a relevant change, `timeoutMilliseconds` elapse, or a stop request.
    func wait(timeoutMilliseconds: Int32) -> Outcome {
        var fds = [pollfd(fd: stop.readFD, events: Int16(POLLIN), revents: 0)]
        if let subscription { fds.append(pollfd(fd: subscription.readyDescriptor, events: Int16(POLLIN), revents: 0)) }
        let ready = poll(&fds, nfds_t(fds.count), timeoutMilliseconds)
        if ready < 0 {
            if errno == EINTR { return .unrelated }
            usleep(100_000)  // Should not happen (EINVAL, ENOMEM); do not spin if it does.
            return .timedOut
        }
        if fds[0].revents != 0 { return .stopped }
        guard ready > 0, fds.count > 1, fds[1].revents != 0 else { return .timedOut }

        var relevant = drainEvents()
        // Coalesce the rest of a burst: keep draining while events keep arriving.
        var settle = [
            pollfd(fd: fds[1].fd, events: Int16(POLLIN), revents: 0),
            pollfd(fd: stop.readFD, events: Int16(POLLIN), revents: 0),
        ]
        while poll(&settle, 2, Self.settleMilliseconds) > 0 {
            if settle[1].revents != 0 { return .stopped }
            relevant = drainEvents() || relevant
            settle[0].revents = 0
        }
        return relevant ? .changed : .unrelated
    }

    /// Takes every queued event; true when one of them may change the file.
    private func drainEvents() -> Bool {
        var relevant = false
        for (event, name) in subscription?.take() ?? [] { relevant = handle(event, name: name) || relevant }
        return relevant
    }

    private func handle(_ event: inotify_event, name: String) -> Bool {
        if event.mask & UInt32(IN_Q_OVERFLOW) != 0 { return true }  // Lost events: assume the worst.
        if event.mask & UInt32(IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF) != 0 {
            // The directory itself went away (volume unmounted, dir replaced): fall back to
            // polling until it reappears, then watch again.
            // A late IN_IGNORED may belong to a watch already replaced: only act on the current one.
            guard event.wd == watchDescriptor else { return false }
            if event.mask & UInt32(IN_IGNORED) == 0, let subscription { SharedInotify.shared.unwatch(watchDescriptor, for: subscription) }
            watchDescriptor = -1
            return true
        }
        // kubelet's AtomicWriter names all of its own entries `..something`; the entry we care
        // about is the file itself. Other files in the directory (ca.crt, namespace) are ignored.
        return name == fileName || name.hasPrefix("..")
    }
}

/// A self-pipe that wakes a watcher thread out of `poll(2)` from any thread (to stop it, or
/// to hand it inotify events: `InotifySubscription`).
final class StopSignal: Sendable {
    let readFD: Int32
    private let writeFD: Int32

    /// Opens the pipe; nil when the process is out of file descriptors.
    init?() {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return nil }
        for fd in ends {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        readFD = ends[0]
        writeFD = ends[1]
    }

    deinit {
        close(readFD)
        close(writeFD)
    }

    /// Wakes the watcher; safe to call more than once and from any thread.
    func fire() {
        var byte: UInt8 = 1
        _ = write(writeFD, &byte, 1)
    }

    /// Empties the pipe (it stops being readable).
    func drain() {
        var bytes = [UInt8](repeating: 0, count: 64)
        while read(readFD, &bytes, bytes.count) > 0 {}
    }
}
