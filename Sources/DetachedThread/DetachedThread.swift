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
    /// Starts `body` on a new thread.
    public static func start(_ body: @escaping @Sendable () -> Void) {
        let context = Unmanaged.passRetained(Body(run: body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread, nil,
            { context in
                Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
                return nil
            }, context)
        if result != 0 {
            // Out of threads: Foundation's Thread trapped here too, with less said.
            fatalError("cannot start a thread: error \(result)")
        }
        pthread_detach(thread)
    }

    private final class Body: Sendable {
        let run: @Sendable () -> Void
        init(run: @escaping @Sendable () -> Void) { self.run = run }
    }
}
