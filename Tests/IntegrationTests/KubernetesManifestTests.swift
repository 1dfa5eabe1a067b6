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

    /// The manifests under deploy/kubernetes and deploy/kubernetes/node (node/config.yaml is
    /// the broker's configuration, not a manifest).
    static func manifestFiles() throws -> [String] {
        let root = "\(TestEnvironment.packageRoot)/deploy/kubernetes"
        let top = try FileManager.default.contentsOfDirectory(atPath: root).filter { $0.hasSuffix(".yaml") }
        let node = try FileManager.default.contentsOfDirectory(atPath: "\(root)/node").filter { $0.hasSuffix(".yaml") && $0 != "config.yaml" }.map {
            "node/\($0)"
        }
        return (top + node).sorted()
    }

    @Test("every manifest passes strict schema validation for Kubernetes 1.31 (native sidecars)")
    func schemaValid() async throws {
        let validator = "\(URL(fileURLWithPath: TestEnvironment.python).deletingLastPathComponent().path)/kubernetes-validate"
        let files = try Self.manifestFiles()
        #expect(files.contains("node/tokenbroker-node.yaml") && files.contains("node/workload-example.yaml"))
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

    // MARK: Node mode (deploy/kubernetes/node)

    struct NodeFacts: Decodable {
        struct Mount: Decodable {
            var mountPath: String
            var readOnly: Bool?
        }
        var config: String
        var brokerSocketMount: String
        var relayCommand: [String]
        var relayStartupProbe: [String]
        var relayEnvironment: [String]
        var relaySocketMount: Mount
        var appEnvironment: [String: String]
        var appSecretEnvironment: [String]
    }

    static func nodeFacts() async throws -> NodeFacts {
        let node = "\(TestEnvironment.packageRoot)/deploy/kubernetes/node"
        let result = try await runCommand(
            TestEnvironment.python,
            ["\(TestEnvironment.fixtures)/python/node_manifest_facts.py", "\(node)/tokenbroker-node.yaml", "\(node)/workload-example.yaml"])
        #expect(result.status == 0, "\(result.stderr)")
        return try JSONDecoder().decode(NodeFacts.self, from: Data(result.stdout.utf8))
    }

    @Test("node mode: node/config.yaml (the DaemonSet's ConfigMap) passes check-config and turns node mode on")
    func nodeConfigPassesCheckConfig() async throws {
        let path = "\(TestEnvironment.packageRoot)/deploy/kubernetes/node/config.yaml"
        let check = try await runCommand(TestEnvironment.daemonPath, ["check-config", "--config", path], environment: [:])
        #expect(check.status == 0, "\(check.stdout) \(check.stderr)")
        #expect(
            check.stdout.contains("configuration is valid") && check.stdout.contains("node mode on (pods in /var/lib/kubelet/pods)"),
            "\(check.stdout)")
    }

    @Test("node mode: the DaemonSet's ConfigMap is node/config.yaml, and the relay and the app agree with the broker and `tokenbroker env --relay`")
    func nodeManifestsAgree() async throws {
        let facts = try await Self.nodeFacts()
        let config = try String(contentsOfFile: "\(TestEnvironment.packageRoot)/deploy/kubernetes/node/config.yaml", encoding: .utf8)
        #expect(facts.config == config, "the ConfigMap's config.yaml and deploy/kubernetes/node/config.yaml differ")

        // The relay connects where the broker listens, through a read-only mount of the same directory.
        let socket = try #require(config.split(separator: "\n").first { $0.contains("path: ") }.map { String($0.split(separator: " ").last!) })
        #expect(socket.hasPrefix(facts.brokerSocketMount + "/") && socket.hasPrefix(facts.relaySocketMount.mountPath + "/"))
        #expect(facts.relaySocketMount.readOnly == true)
        #expect(facts.relayCommand.first == "tokenbroker")
        let arguments = Array(facts.relayCommand.dropFirst())
        #expect(arguments.starts(with: ["relay"]) && arguments.contains(socket))
        #expect(facts.relayEnvironment.contains("IDENTITY_HEADER"))
        #expect(facts.appSecretEnvironment == ["IDENTITY_HEADER"])

        // The app's environment is what `tokenbroker env --relay` prints for the relay's address.
        let listen = try #require(arguments.firstIndex(of: "--listen").map { arguments[$0 + 1] })
        let env = try await runCommand(
            TestEnvironment.cliPath, ["env", "--relay", "http://\(listen)"], environment: ["IDENTITY_HEADER": "0123456789abcdef0123"])
        #expect(env.status == 0, "\(env.stderr)")
        for (name, value) in facts.appEnvironment where name != "AZURE_CLIENT_ID" {
            #expect(env.stdout.contains("export \(name)='\(value)'"), "\(name)=\(value) is not what `tokenbroker env --relay` prints: \(env.stdout)")
        }

        // The startup probe is the relay's own check of the same address: it fails while nothing listens there.
        #expect(facts.relayStartupProbe.starts(with: ["tokenbroker", "relay", "--listen", listen, "--check"]))
        let probe = try await runCommand(
            TestEnvironment.cliPath, Array(facts.relayStartupProbe.dropFirst()).map { $0 == listen ? "127.0.0.1:1" : $0 })
        #expect(probe.status == 1, "\(probe.stderr)")
    }
}
