import Foundation
import Testing

/// deploy/kubernetes: valid for the API server (offline, with pip kubernetes-validate),
/// and consistent with the broker that will read it.
@Suite("Kubernetes sidecar recipe")
struct KubernetesManifestTests {
    static let manifest = "\(TestEnvironment.packageRoot)/deploy/kubernetes/tokenbroker-sidecar.yaml"

    struct Facts: Decodable {
        var config: String
        var appEnvironment: [String: String]
        var probes: [String: [String]]
    }

    static func facts() async throws -> Facts {
        let result = try await runCommand(TestEnvironment.python, ["\(TestEnvironment.fixtures)/python/manifest_facts.py", manifest])
        #expect(result.status == 0, "\(result.stderr)")
        return try JSONDecoder().decode(Facts.self, from: Data(result.stdout.utf8))
    }

    @Test("every manifest passes strict schema validation for Kubernetes 1.31 (native sidecars)")
    func schemaValid() async throws {
        let validator = "\(URL(fileURLWithPath: TestEnvironment.python).deletingLastPathComponent().path)/kubernetes-validate"
        let files = try FileManager.default.contentsOfDirectory(atPath: "\(TestEnvironment.packageRoot)/deploy/kubernetes").filter { $0.hasSuffix(".yaml") }
        #expect(!files.isEmpty)
        for file in files {
            let result = try await runCommand(validator, ["-k", "1.31.0", "--strict", "\(TestEnvironment.packageRoot)/deploy/kubernetes/\(file)"])
            #expect(result.status == 0, "\(file): \(result.stdout) \(result.stderr)")
            #expect(!result.stdout.contains("ERROR") && !result.stdout.contains("WARN"), "\(file): \(result.stdout)")
        }
    }

    @Test("the ConfigMap's config passes check-config, and the app's environment points where the broker listens")
    func configurationMatchesTheApp() async throws {
        let facts = try await Self.facts()
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try facts.config.write(toFile: "\(directory)/config.yaml", atomically: true, encoding: .utf8)
        let check = try await runCommand(TestEnvironment.daemonPath, ["check-config", "--config", "\(directory)/config.yaml"], environment: [:])
        #expect(check.status == 0, "\(check.stderr)")

        #expect(facts.config.contains("path: \(facts.appEnvironment["TOKENBROKER_SOCKET"] ?? "?")"))
        let authority = try #require(facts.appEnvironment["AZURE_POD_IDENTITY_AUTHORITY_HOST"])
        #expect(facts.config.contains("tcp: \"\(authority.replacingOccurrences(of: "http://", with: ""))\""))
        #expect(facts.appEnvironment["IDENTITY_ENDPOINT"] == "\(authority)/msi/token")
    }

    @Test("the sidecar's probe commands work against a running broker")
    func probesWork() async throws {
        let facts = try await Self.facts()
        try await Scenario.run { scenario in
            for (kind, command) in facts.probes.sorted(by: { $0.key < $1.key }) {
                #expect(command.first == "tokenbroker", "\(kind)")
                var arguments = Array(command.dropFirst())
                if let socket = arguments.firstIndex(of: "--socket") { arguments[socket + 1] = scenario.broker.socketPath }
                let result = try await runCommand(TestEnvironment.cliPath, arguments)
                #expect(result.status == 0, "\(kind) \(arguments): \(result.stderr)")
            }
        }
    }
}
