#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A detached thread for blocking work (inotify loops, epoll loops, child processes, log
/// writing): Foundation's `Thread`, which FoundationEssentials lacks, on pthreads. The
/// kernel's thread name is left alone, as `Thread` left it: the event loops name theirs
/// (`tokenbroker-N`) and tests count those.
public enum DetachedThread {
    /// Starts `body` on a new thread the process cannot do without (an event loop, a watcher,
    /// the log writer): traps if the system has none to give, as Foundation's `Thread` did.
    public static func start(_ body: @escaping @Sendable () -> Void) {
        if let error = tryStart(body) { fatalError("cannot start a thread: \(String(cString: strerror(error)))") }
    }

    /// Starts `body` on a new thread; the error number (and `body` never runs) when the system
    /// has none to give — EAGAIN at the unit's `TasksMax=` or the cgroup's `pids.max`. Work
    /// started per request (a plugin run, a sink write) fails that request, not the daemon.
    public static func tryStart(_ body: @escaping @Sendable () -> Void) -> Int32? {
        let context = Unmanaged.passRetained(Body(run: body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread, nil,
            { context in
                Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
                return nil
            }, context)
        guard result == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            return result
        }
        pthread_detach(thread)
        return nil
    }

    private final class Body: Sendable {
        let run: @Sendable () -> Void
        init(run: @escaping @Sendable () -> Void) { self.run = run }
    }
}
