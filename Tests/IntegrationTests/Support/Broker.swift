import Foundation
import OffPool

/// `tokenbrokerd` with a generated configuration file, talking to a `DevProvider`.
final class BrokerDaemon: @unchecked Sendable {
    let process: ChildProcess
    let socketPath: String
    let configPath: String

    /// An identity for the generated configuration.
    struct Identity {
        var name: String
        var tokenFile: String
        var allow: String? = nil  // YAML flow list, e.g. "[ { any: true } ]"
        var prefetch: [String] = []
        var clientId: String? = nil  // default: the provider's
        var aliases: String? = nil  // YAML flow mapping, e.g. "{ objectId: … }"
        var sourceYAML: String? = nil  // replaces { file: tokenFile }
        var exchangeYAML: String? = nil  // replaces the provider's Entra exchange
    }

    init(
        directory: String, provider: DevProvider, identities: [Identity], logLevel: String = "debug", extraYAML: String = "",
        allowInsecureLoopback: Bool = false,
        environment: [String: String]? = nil, netns: String? = nil
    ) async throws {
        socketPath = "\(directory)/broker.sock"
        configPath = "\(directory)/config.yaml"
        let process = try Self.start(
            configPath: configPath, socketPath: socketPath, provider: provider, identities: identities,
            logLevel: logLevel, extraYAML: extraYAML, allowInsecureLoopback: allowInsecureLoopback, environment: environment, directory: directory,
            netns: netns)
        self.process = process
        let socketPath = self.socketPath
        do {
            try await waitUntil("the broker socket") {
                guard process.isRunning else { throw HarnessError("tokenbrokerd exited: \(process.stderr)") }
                return FileManager.default.fileExists(atPath: socketPath) && process.stderr.contains("ready")
            }
        } catch {
            await process.stop()
            throw error
        }
    }

    private static func start(
        configPath: String, socketPath: String, provider: DevProvider, identities: [Identity], logLevel: String, extraYAML: String,
        allowInsecureLoopback: Bool,
        environment: [String: String]?, directory: String, netns: String?
    ) throws -> ChildProcess {
        try configurationYAML(
            socketPath: socketPath, provider: provider, identities: identities, logLevel: logLevel, extraYAML: extraYAML,
            allowInsecureLoopback: allowInsecureLoopback
        )
        .write(toFile: configPath, atomically: true, encoding: .utf8)
        let (executable, prefix) = TestEnvironment.command(TestEnvironment.daemonPath, inNetworkNamespace: netns)
        return try ChildProcess(
            executable: executable, arguments: prefix + ["--config", configPath], environment: environment, logDirectory: directory, name: "broker")
    }

    /// The YAML of a configuration serving `identities` against `provider`.
    static func configurationYAML(
        socketPath: String, provider: DevProvider, identities: [Identity], logLevel: String = "debug", extraYAML: String = "",
        allowInsecureLoopback: Bool = false
    ) -> String {
        var yaml = """
            socket: { path: \(socketPath) }
            upstream: { caFile: \(provider.endpoints.caFile), allowInsecureLoopback: \(allowInsecureLoopback) }
            log: { level: \(logLevel) }
            \(extraYAML)
            identities:

            """
        for identity in identities {
            yaml += """
                  - name: \(identity.name)
                    source: \(identity.sourceYAML ?? "{ file: \(identity.tokenFile) }")
                    exchange: \(identity.exchangeYAML ?? "{ entra: { tenantId: \"\(provider.endpoints.tenantId)\", clientId: \"\(identity.clientId ?? provider.endpoints.clientId)\", authorityHost: \"\(provider.endpoints.authorityHost)\" } }")

                """
            if let allow = identity.allow { yaml += "    allow: \(allow)\n" }
            if let aliases = identity.aliases { yaml += "    aliases: \(aliases)\n" }
            if !identity.prefetch.isEmpty { yaml += "    prefetch: [ \(identity.prefetch.map { "\"\($0)\"" }.joined(separator: ", ")) ]\n" }
        }
        return yaml
    }

    func stop() async -> Int32 { await process.stop() }

    /// One NDJSON request on a new connection.
    func request(_ json: String) async throws -> Reply {
        let socketPath = self.socketPath
        return try await offPool {
            let connection = try UnixSocketConnection(path: socketPath)
            try connection.send(json + "\n")
            return try connection.readJSONLine()
        }
    }
}
