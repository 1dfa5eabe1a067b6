import Foundation

/// `tokenbroker-dev-provider` in its own process: the issuer and the Entra
/// emulator the broker exchanges with, plus their test controls.
final class DevProvider: @unchecked Sendable {
    struct Endpoints: Decodable {
        var issuerURL: String
        var authorityHost: String
        var tenantId: String
        var clientId: String
        var caFile: String
        var tokenFile: String
        var audience: String
        /// The RFC 8693 endpoint and the token file with its audience.
        var stsTokenEndpoint: String
        var stsTokenFile: String
        var stsAudience: String
    }

    let process: ChildProcess
    let endpoints: Endpoints
    let directory: String

    /// Starts a provider in `directory/provider` accepting `extraSubjects` too.
    /// `apps`: client id → the one subject that app's federated credential trusts.
    init(
        directory: String, extraSubjects: [String] = [], extraClientIds: [String] = [], apps: [String: String] = [:], accessTokenLifetime: Int = 3600,
        netns: String? = nil
    ) async throws {
        self.directory = "\(directory)/provider"
        var arguments = [
            "--state-dir", self.directory, "--access-token-lifetime", String(accessTokenLifetime), "--log-level", "debug",
        ]
        for subject in extraSubjects { arguments += ["--subject", subject] }
        for clientId in extraClientIds { arguments += ["--client-id", clientId] }
        for (clientId, subject) in apps.sorted(by: { $0.key < $1.key }) { arguments += ["--app", "\(clientId)=\(subject)"] }
        let (executable, prefix) = TestEnvironment.command(TestEnvironment.devProviderPath, inNetworkNamespace: netns)
        process = try ChildProcess(executable: executable, arguments: prefix + arguments, logDirectory: directory, name: "provider")
        let file = "\(self.directory)/provider.json"
        let process = self.process
        do {
            try await waitUntil("provider.json") {
                guard process.isRunning else { throw HarnessError("tokenbroker-dev-provider exited: \(process.stderr)") }
                return FileManager.default.fileExists(atPath: file)
            }
        } catch {
            // A provider too slow to start (a loaded machine) must not outlive the test.
            await process.stop()
            throw error
        }
        endpoints = try JSONDecoder().decode(Endpoints.self, from: Data(contentsOf: URL(fileURLWithPath: file)))
    }

    func stop() async { await process.stop() }

    // MARK: Controls

    struct Stats: Decodable {
        struct Request: Decodable {
            var scope: String?
            var clientId: String?
            var fields: [String]
            var grantType: String?
            var clientAssertionType: String?
            var assertionSha256: String?
            var assertionSubject: String?
            var assertionJti: String?
            var status: Int
            var errorCode: Int?
        }
        var tokenRequests: Int
        var byScope: [String: Int]
        var requests: [Request]
    }

    func stats() async throws -> Stats {
        try JSONDecoder().decode(Stats.self, from: Data(try await https("GET", "\(endpoints.authorityHost)/_dev/stats").utf8))
    }

    func setFault(status: Int, count: Int, retryAfterSeconds: Int? = nil, body: String? = nil) async throws {
        var fault: [String: Any] = ["status": status, "count": count]
        if let retryAfterSeconds { fault["retryAfterSeconds"] = retryAfterSeconds }
        if let body { fault["body"] = body }
        _ = try await https("POST", "\(endpoints.authorityHost)/_dev/faults", json: fault)
    }

    func setLatency(milliseconds: Int) async throws {
        _ = try await https("POST", "\(endpoints.authorityHost)/_dev/latency", json: ["milliseconds": milliseconds])
    }

    /// A service-account token signed by the issuer with the given claims.
    func mint(
        sub: String? = nil, aud: [String]? = nil, ttlSeconds: Int? = nil, issuedAtOffsetSeconds: Int? = nil, notBeforeOffsetSeconds: Int? = nil,
        namespace: String? = nil, serviceAccount: String? = nil, podUID: String? = nil, foreignKey: Bool = false
    ) async throws -> String {
        var body: [String: Any] = [:]
        // Signed with a key the issuer's JWKS does not publish (another `kid`).
        if foreignKey { body["foreignKey"] = true }
        if let namespace { body["namespace"] = namespace }
        if let serviceAccount { body["serviceAccount"] = serviceAccount }
        if let podUID { body["podUID"] = podUID }
        if let sub { body["sub"] = sub }
        if let aud { body["aud"] = aud }
        if let ttlSeconds { body["ttlSeconds"] = ttlSeconds }
        if let issuedAtOffsetSeconds { body["issuedAtOffsetSeconds"] = issuedAtOffsetSeconds }
        if let notBeforeOffsetSeconds { body["notBeforeOffsetSeconds"] = notBeforeOffsetSeconds }
        let answer = try await https("POST", "\(endpoints.issuerURL)/_dev/mint", json: body)
        guard let object = try JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any], let token = object["token"] as? String else {
            throw HarnessError("mint answered \(answer)")
        }
        return token
    }

    /// Writes the issuer's public keys (its `/openid/v1/jwks`, as the API server serves the
    /// cluster's) to `path`: node mode's `kubernetes.serviceAccountKeys`.
    func writeIssuerKeys(to path: String) async throws {
        try await https("GET", "\(endpoints.issuerURL)/openid/v1/jwks").write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Rotates the token file with the kubelet AtomicWriter sequence; returns the new token's jti.
    func rotate() async throws -> String {
        let answer = try await https("POST", "\(endpoints.issuerURL)/_dev/rotate", json: [:])
        guard let object = try JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any], let jti = object["jti"] as? String else {
            throw HarnessError("rotate answered \(answer)")
        }
        return jti
    }

    private func https(_ method: String, _ url: String, json: [String: Any]? = nil) async throws -> String {
        var arguments = ["-sS", "--fail-with-body", "--cacert", endpoints.caFile, "-X", method, url]
        if let json {
            arguments += [
                "-H", "Content-Type: application/json", "--data-binary",
                String(decoding: try JSONSerialization.data(withJSONObject: json), as: UTF8.self),
            ]
        }
        let result = try await runCommand("/usr/bin/curl", arguments)
        guard result.status == 0 else { throw HarnessError("curl \(method) \(url) failed (\(result.status)): \(result.stderr) \(result.stdout)") }
        return result.stdout
    }
}
