import Logging
import ServiceLifecycle
import TokenCache
import TokenExchange

/// Fetches each identity's `prefetch` scopes at start and asks for them again every
/// minute, so the cache counts them as recently requested and keeps them fresh.
/// A failure is retried on the next round; the cache applies its own backoff.
struct Prefetcher: Service {
    let scopes: [TokenKey]
    let cache: TokenCache<ContinuousClock>
    let logger: Logger

    func run() async throws {
        guard !scopes.isEmpty else {
            // Nothing to do, but a service that returns early would stop the group.
            try? await gracefulShutdown()
            return
        }
        // Shutdown cancels the sleep; that is the normal way out, not an error.
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await withTaskGroup(of: Void.self) { group in
                    for key in scopes {
                        group.addTask {
                            do throws(TokenExchangeError) {
                                _ = try await cache.token(for: key)
                            } catch {
                                logger.warning("prefetch failed", metadata: ["token.identity": "\(key.identity)", "token.scope": "\(key.scope)", "error.code": "\(error.code.rawValue)"])
                            }
                        }
                    }
                }
                try await Task.sleep(for: .seconds(60))
            }
        }
    }
}
