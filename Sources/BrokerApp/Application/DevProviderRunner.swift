import DevIdentityProvider
public import Logging
import ServiceLifecycle
import UnixSignals

/// `tokenbrokerd dev-provider`: the dev issuer and token service alone, for tests
/// that run the broker as in production against them.
public enum DevProviderRunner {
    /// Starts the provider, then runs until SIGTERM/SIGINT.
    public static func run(
        stateDirectory: String, extraSubjects: [String], extraClientIds: [String] = [], appSubjects: [String: [String]] = [:],
        accessTokenLifetime: Int, assertionLifetime: Int, rotateEvery: Int?, logger: Logger
    ) async throws {
        var configuration = DevIdentityProviderConfiguration(stateDirectory: stateDirectory)
        configuration.extraSubjects = extraSubjects
        configuration.extraClientIds = extraClientIds
        configuration.appSubjects = appSubjects
        configuration.accessTokenLifetime = .seconds(accessTokenLifetime)
        configuration.assertionLifetime = .seconds(assertionLifetime)
        configuration.rotationInterval = rotateEvery.map { .seconds($0) }
        let provider = DevIdentityProvider(configuration: configuration, logger: logger)
        let endpoints = try await provider.start()
        logger.info("dev provider ready", metadata: ["dev.issuer": "\(endpoints.issuerURL)", "dev.authority": "\(endpoints.authorityHost)"])
        let group = ServiceGroup(
            configuration: .init(services: [.named(provider)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
