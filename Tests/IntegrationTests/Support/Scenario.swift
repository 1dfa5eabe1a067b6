import Foundation

/// A temp directory, a dev provider and a broker configured against it, torn down
/// (processes stopped, files removed) whatever the test body does.
struct Scenario {
    let directory: String
    let provider: DevProvider
    let broker: BrokerDaemon

    static let scope = "https://storage.azure.com/.default"

    /// Runs `body` with a provider and a broker whose identity `default` reads the
    /// provider's rotating token file; `identities` adds more. `netns`: run both in that
    /// network namespace (the provider's controls are then out of the test's reach).
    static func run(
        extraSubjects: [String] = [],
        extraClientIds: [String] = [],
        identities: (_ directory: String, _ provider: DevProvider) async throws -> [BrokerDaemon.Identity] = { _, _ in [] },
        logLevel: String = "debug",
        extraYAML: String = "",
        allowInsecureLoopback: Bool = false,
        environment: [String: String]? = nil,
        netns: String? = nil,
        _ body: (Scenario) async throws -> Void
    ) async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let provider = try await DevProvider(directory: directory, extraSubjects: extraSubjects, extraClientIds: extraClientIds, netns: netns)
        let broker: BrokerDaemon
        do {
            let all = [BrokerDaemon.Identity(name: "default", tokenFile: provider.endpoints.tokenFile)] + (try await identities(directory, provider))
            broker = try await BrokerDaemon(
                directory: directory, provider: provider, identities: all, logLevel: logLevel, extraYAML: extraYAML,
                allowInsecureLoopback: allowInsecureLoopback, environment: environment, netns: netns)
        } catch {
            await provider.stop()
            throw error
        }
        do {
            try await body(Scenario(directory: directory, provider: provider, broker: broker))
        } catch {
            _ = await broker.stop()
            await provider.stop()
            throw error
        }
        _ = await broker.stop()
        await provider.stop()
    }

    /// Writes `token` to a plain file in the scenario directory.
    static func writeTokenFile(_ token: String, in directory: String, name: String) throws -> String {
        let path = "\(directory)/\(name)"
        try token.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
