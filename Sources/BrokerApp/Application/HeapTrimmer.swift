import CMalloc
import ServiceLifecycle
import TokenCache

/// Gives the heap's free pages back to the system after token exchanges.
///
/// Each exchange allocates a few tens of KiB of temporaries (TLS records, the HTTP
/// response, JSON) that are freed around the tokens that stay; glibc keeps the freed
/// pages. After a burst of exchanges (start-up, many new scopes, a refresh round)
/// `malloc_trim` returns those that are wholly free: about 4 MiB after 10,000 new
/// scopes (docs/benchmarks.md). It runs at most once per `interval`, and only when
/// exchanges finished since the last time, so an idle broker does nothing.
struct HeapTrimmer: Service {
    let cache: TokenCache<ContinuousClock>
    var interval: Duration = .seconds(30)
    var trim: @Sendable () -> Void = { _ = malloc_trim(0) }

    func run() async throws {
        // Shutdown cancels the sleep; that is the normal way out, not an error.
        try? await cancelWhenGracefulShutdown {
            var trimmedAfter = 0
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                let finished = cache.exchangesFinished
                guard finished != trimmedAfter else { continue }
                trimmedAfter = finished
                trim()
            }
        }
    }
}
