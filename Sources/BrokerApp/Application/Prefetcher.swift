import Logging
import ServiceLifecycle
import TokenCache
import TokenExchange

/// Fetches each identity's `prefetch` scopes at start and asks for them again every
/// minute, so the cache counts them as recently requested and keeps them fresh.
/// The list is read each round, so a reload's changes apply. A failure is retried
/// on the next round; the cache applies its own backoff.
struct Prefetcher: Service {
    let runtime: BrokerRuntime
    let logger: Logger

    func run() async throws {
        // Shutdown cancels the sleep; that is the normal way out, not an error.
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let keys = runtime.broker.currentIdentities.flatMap { identity in
                    identity.configuration.prefetch.map { TokenKey(identity: identity.configuration.name, scope: $0) }
                }
                await withTaskGroup(of: Void.self) { group in
                    for key in keys {
                        group.addTask {
                            do throws(TokenExchangeError) {
                                _ = try await runtime.cache.token(for: key)
                            } catch {
                                logger.warning(
                                    "prefetch failed",
                                    metadata: [
                                        "token.identity": "\(key.identity)", "token.scope": "\(key.scope)", "error.code": "\(error.code.rawValue)",
                                    ])
                            }
                        }
                    }
                }
                try await Task.sleep(for: .seconds(keys.isEmpty ? 5 : 60))
            }
        }
    }
}
