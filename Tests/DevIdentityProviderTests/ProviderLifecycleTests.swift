import DevIdentityProvider
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Testing

/// `run()` keeps the token fresh until it is cancelled or the service group shuts down, then closes.
@Suite struct ProviderLifecycle {
    @Test func runRotatesUntilCancelledThenCloses() async throws {
        try await ProviderFixture.with(configure: { $0.rotationInterval = .milliseconds(100) }) { f in
            let first = jwtPayload(try f.currentTokenFile())["jti"] as? String
            let runner = Task { try await f.provider.run() }
            var rotated = false
            for _ in 0..<100 where !rotated {
                try await Task.sleep(for: .milliseconds(50))
                rotated = jwtPayload((try? f.currentTokenFile()) ?? "")["jti"] as? String != first
            }
            #expect(rotated)
            runner.cancel()
            try await runner.value
            await #expect(throws: (any Error).self) {
                _ = try await f.send(.GET, f.endpoints.issuerURL + "/openid/v1/jwks")
            }
        }
    }

    @Test func gracefulShutdownOfTheServiceGroupEndsRun() async throws {
        try await ProviderFixture.with(configure: { $0.rotationInterval = .seconds(3600) }) { f in
            var logger = Logger(label: "test.group")
            logger.logLevel = .notice
            let group = ServiceGroup(services: [f.provider], logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                // The servers keep answering while the service runs.
                #expect(try await f.send(.GET, f.endpoints.issuerURL + "/openid/v1/jwks").status == .ok)
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
            await #expect(throws: (any Error).self) {
                _ = try await f.send(.GET, f.endpoints.authorityHost + "/_dev/stats")
            }
        }
    }

    @Test func startIsIdempotent() async throws {
        try await ProviderFixture.with { f in
            let again = try await f.provider.start()
            #expect(again == f.endpoints)
        }
    }
}
