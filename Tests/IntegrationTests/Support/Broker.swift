import Foundation

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
    }

    init(directory: String, provider: DevProvider, identities: [Identity], logLevel: String = "debug", extraYAML: String = "") async throws {
        socketPath = "\(directory)/broker.sock"
        configPath = "\(directory)/config.yaml"
        var yaml = """
            socket: { path: \(socketPath) }
            upstream: { caFile: \(provider.endpoints.caFile) }
            log: { level: \(logLevel) }
            \(extraYAML)
            identities:

            """
        for identity in identities {
            yaml += """
                  - name: \(identity.name)
                    source: { file: \(identity.tokenFile) }
                    exchange:
                      entra: { tenantId: "\(provider.endpoints.tenantId)", clientId: "\(provider.endpoints.clientId)", authorityHost: "\(provider.endpoints.authorityHost)" }

                """
            if let allow = identity.allow { yaml += "    allow: \(allow)\n" }
        }
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        process = try ChildProcess(executable: TestEnvironment.daemonPath, arguments: ["--config", configPath], logDirectory: directory, name: "broker")
        let process = self.process
        let socketPath = self.socketPath
        try await waitUntil("the broker socket") {
            guard process.isRunning else { throw HarnessError("tokenbrokerd exited: \(process.stderr)") }
            return FileManager.default.fileExists(atPath: socketPath) && process.stderr.contains("ready")
        }
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
