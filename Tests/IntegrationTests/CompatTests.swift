import Foundation
import OffPool
import Testing

/// The App Service and IMDS compatible endpoints, driven by clients nobody here
/// wrote: azure-identity, msal and curl, with the environment `tokenbroker env` prints.
@Suite("Compatibility endpoints")
struct CompatTests {
    static let scope = "https://storage.azure.com/.default"
    static let resource = "https://storage.azure.com"
    /// A second app registration, for a user-assigned identity picked by `client_id`.
    static let userAssignedClientId = "0a11ce00-0000-4000-8000-0000000000a2"

    /// A broker with the compat listener on (TCP port 0 and a Unix socket).
    static func run(
        identities: @escaping (_ directory: String, _ provider: DevProvider) async throws -> [BrokerDaemon.Identity] = { _, _ in [] },
        _ body: (_ scenario: Scenario, _ compatSocket: String) async throws -> Void
    ) async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Scenario.run(
            extraClientIds: [userAssignedClientId], identities: identities,
            extraYAML: "compat: { tcp: \"127.0.0.1:0\", unix: \(directory)/compat.sock, identityHeaderFile: \(directory)/identity-header }"
        ) { scenario in try await body(scenario, "\(directory)/compat.sock") }
    }

    /// `tokenbroker env` against the scenario's broker, parsed.
    static func brokerEnvironment(_ scenario: Scenario, identity: String? = nil, protocols: [String] = []) async throws -> [String: String] {
        let result = try await runCommand(
            TestEnvironment.cliPath,
            ["env", "--socket", scenario.broker.socketPath] + (identity.map { ["--identity", $0] } ?? []) + protocols.flatMap { ["--protocol", $0] })
        #expect(result.status == 0, "tokenbroker env failed: \(result.stderr)")
        var variables: [String: String] = [:]
        for line in result.stdout.split(separator: "\n") {
            guard line.hasPrefix("export "), let equals = line.firstIndex(of: "=") else { continue }
            let name = String(line[line.index(line.startIndex, offsetBy: 7)..<equals])
            variables[name] = String(line[line.index(after: equals)...]).trimmingCharacters(in: CharacterSet(charactersIn: "'"))
        }
        return variables
    }

    /// The test process's environment without anything that steers Azure SDKs, plus `extra`.
    static func sdkEnvironment(_ extra: [String: String]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { name, _ in
            !name.hasPrefix("AZURE_") && !name.hasPrefix("IDENTITY_") && !name.hasPrefix("MSI_") && !name.hasPrefix("IMDS_")
        }
        environment.merge(extra) { _, new in new }
        return environment
    }

    /// Runs Tests/IntegrationTests/Fixtures/python/managed_identity.py.
    static func python(
        _ client: String, clientId: String? = nil, environment: [String: String], interpreter: String = TestEnvironment.python, netns: String? = nil
    ) async throws -> (status: Int32, token: String?, stderr: String) {
        let (executable, prefix) = TestEnvironment.command(interpreter, inNetworkNamespace: netns)
        let result = try await runCommand(
            executable, prefix + ["\(TestEnvironment.fixtures)/python/managed_identity.py", client, scope] + (clientId.map { [$0] } ?? []),
            environment: environment)
        let json = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return (result.status, json?["token"] as? String, result.stderr)
    }

    static func curl(_ arguments: [String]) async throws -> (status: Int, body: [String: Any]) {
        let result = try await runCommand("/usr/bin/curl", ["-s", "-o", "-", "-w", "\n%{http_code}"] + arguments)
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let body = lines.dropLast().joined(separator: "\n")
        return (Int(lines.last ?? "") ?? 0, (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:])
    }

    static func imdsURL(_ variables: [String: String], _ query: String = "api-version=2018-02-01&resource=\(resource)") -> String {
        "\(variables["AZURE_POD_IDENTITY_AUTHORITY_HOST"] ?? "")/metadata/identity/oauth2/token?\(query)"
    }

    @Test("azure-identity and msal get the socket's cached token through the App Service and IMDS routes, with no extra exchange")
    func sdksShareTheSocketsToken() async throws {
        try await Self.run { scenario, _ in
            let socketToken = try await scenario.broker.request(#"{"op":"token","scope":"\#(Self.scope)"}"#)
            #expect(socketToken.ok)
            let variables = try await Self.brokerEnvironment(scenario)
            let appService = Self.sdkEnvironment(variables.filter { $0.key != "AZURE_POD_IDENTITY_AUTHORITY_HOST" })
            let imds = Self.sdkEnvironment(variables.filter { $0.key == "AZURE_POD_IDENTITY_AUTHORITY_HOST" })

            for (client, environment, route) in [
                ("managed", appService, "App Service"), ("managed", imds, "IMDS"), ("default", appService, "App Service"),
                ("msal", appService, "App Service"), ("msal", imds, "IMDS"), ("probe", imds, "IMDS after the header-less probe"),
            ] {
                let result = try await Self.python(client, environment: environment)
                #expect(result.status == 0, "\(client) via \(route): \(result.stderr)")
                #expect(result.token == socketToken.token, "\(client) via \(route) got a different token")
            }
            let stats = try await scenario.provider.stats()
            #expect(stats.byScope[Self.scope] == 1, "every client was served from the one cached token")
        }
    }

    @Test("tokenbroker exec runs an unmodified program with the environment set")
    func execSetsTheEnvironment() async throws {
        try await Self.run { scenario, _ in
            let result = try await runCommand(
                TestEnvironment.cliPath,
                [
                    "exec", "--socket", scenario.broker.socketPath, "--", TestEnvironment.python,
                    "\(TestEnvironment.fixtures)/python/managed_identity.py", "managed", Self.scope,
                ],
                environment: Self.sdkEnvironment([:]))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains(#""token": "ey"#))
            let missing = try await runCommand(
                TestEnvironment.cliPath, ["exec", "--socket", scenario.broker.socketPath, "--", "/nonexistent/program"])
            #expect(missing.status == 127)
            #expect(missing.stderr.contains("cannot run /nonexistent/program"))
        }
    }

    @Test("a user-assigned identity is picked by client_id; with several identities and no id the SDK gets an error naming the problem")
    func userAssignedIdentityByClientId() async throws {
        try await Self.run(identities: { _, provider in
            [
                BrokerDaemon.Identity(
                    name: "storage", tokenFile: provider.endpoints.tokenFile, clientId: Self.userAssignedClientId,
                    aliases: "{ objectId: 0b1ec700-0000-4000-8000-000000000001 }")
            ]
        }) { scenario, _ in
            let variables = try await Self.brokerEnvironment(scenario, identity: "storage")
            #expect(variables["AZURE_CLIENT_ID"] == Self.userAssignedClientId)
            let appService = Self.sdkEnvironment(variables.filter { $0.key != "AZURE_CLIENT_ID" })

            let managed = try await Self.python("managed", clientId: Self.userAssignedClientId, environment: appService)
            #expect(managed.status == 0, "\(managed.stderr)")
            let msal = try await Self.python("msal", clientId: Self.userAssignedClientId, environment: appService)
            #expect(msal.status == 0, "\(msal.stderr)")
            #expect(msal.token == managed.token)
            // DefaultAzureCredential reads AZURE_CLIENT_ID, as `tokenbroker env --identity` sets it.
            let defaultCredential = try await Self.python("default", environment: Self.sdkEnvironment(variables))
            #expect(defaultCredential.token == managed.token, "\(defaultCredential.stderr)")
            let requests = try await scenario.provider.stats().requests
            #expect(requests.map(\.clientId) == [Self.userAssignedClientId], "one exchange, for the user-assigned app")

            // Root may use both identities: without an id the broker cannot choose.
            let ambiguous = try await Self.python("managed", environment: appService)
            #expect(ambiguous.status == 1)
            #expect(ambiguous.stderr.contains("several identities"), "\(ambiguous.stderr)")
            // An object id through its alias, over IMDS.
            let byObjectId = try await Self.curl([
                "-H", "Metadata: true",
                Self.imdsURL(variables, "api-version=2018-02-01&resource=\(Self.resource)&object_id=0B1EC700-0000-4000-8000-000000000001"),
            ])
            #expect(byObjectId.status == 200)
            #expect(byObjectId.body["client_id"] as? String == Self.userAssignedClientId)
            let unknown = try await Self.curl([
                "-H", "Metadata: true", Self.imdsURL(variables, "api-version=2018-02-01&resource=\(Self.resource)&client_id=nobody"),
            ])
            #expect(unknown.status == 400)
            #expect(unknown.body["error_description"] as? String == "Identity not found")
        }
    }

    @Test("a missing or wrong anti-SSRF header gets the SDK's error and no token")
    func antiSSRFHeaders() async throws {
        try await Self.run { scenario, _ in
            var variables = try await Self.brokerEnvironment(scenario)
            variables["IDENTITY_HEADER"] = "not-the-secret"
            for client in ["managed", "msal"] {
                let result = try await Self.python(
                    client, environment: Self.sdkEnvironment(variables.filter { $0.key != "AZURE_POD_IDENTITY_AUTHORITY_HOST" }))
                #expect(result.status == 1 && result.token == nil, "\(client) got a token with a wrong X-IDENTITY-HEADER")
                #expect(result.stderr.contains("X-IDENTITY-HEADER is missing or wrong"), "\(client): \(result.stderr)")
            }
            let noHeader = try await Self.curl(["\(variables["IDENTITY_ENDPOINT"]!)?api-version=2019-08-01&resource=\(Self.resource)"])
            #expect(noHeader.status == 401 && noHeader.body["access_token"] == nil)
            #expect(noHeader.body["statusCode"] as? Int == 401)
            let noMetadata = try await Self.curl([Self.imdsURL(variables)])
            #expect(noMetadata.status == 400 && noMetadata.body["access_token"] == nil)
            #expect(noMetadata.body["error_description"] as? String == "Required metadata header not specified")
            let elsewhere = try await Self.curl([
                "-H", "Metadata: true", "\(variables["AZURE_POD_IDENTITY_AUTHORITY_HOST"]!)/metadata/instance?api-version=2021-02-01",
            ])
            #expect(elsewhere.status == 404)
            let malformed = try await Self.curl(["-H", "Metadata: true", Self.imdsURL(variables) + "%zz"])
            #expect(malformed.status == 400 && (malformed.body["error_description"] as? String)?.contains("malformed %-escape") == true)
            #expect(try await scenario.provider.stats().tokenRequests == 0, "no exchange happened for any refused request")
        }
    }

    @Test("curl sees the real services' field types: strings for every IMDS and App Service token field")
    func fieldTypes() async throws {
        try await Self.run { scenario, _ in
            let variables = try await Self.brokerEnvironment(scenario)
            let imds = try await Self.curl(["-H", "Metadata: true", Self.imdsURL(variables)])
            #expect(imds.status == 200)
            #expect(
                Set(imds.body.keys) == [
                    "access_token", "refresh_token", "expires_in", "expires_on", "not_before", "resource", "token_type", "client_id",
                ])
            #expect(imds.body.values.allSatisfy { $0 is String }, "IMDS sends strings: \(imds.body.mapValues { type(of: $0) })")
            #expect(imds.body["refresh_token"] as? String == "")
            #expect(imds.body["resource"] as? String == Self.resource)
            let expiresIn = Int(imds.body["expires_in"] as? String ?? "") ?? 0
            #expect(expiresIn > 3000 && expiresIn <= 3600)

            let appService = try await Self.curl([
                "-H", "X-IDENTITY-HEADER: \(variables["IDENTITY_HEADER"]!)",
                "\(variables["IDENTITY_ENDPOINT"]!)?api-version=2019-08-01&resource=\(Self.resource)",
            ])
            #expect(appService.status == 200)
            #expect(Set(appService.body.keys) == ["access_token", "expires_on", "not_before", "resource", "token_type", "client_id"])
            #expect(appService.body.values.allSatisfy { $0 is String })
            #expect(appService.body["access_token"] as? String == imds.body["access_token"] as? String)
            #expect(appService.body["client_id"] as? String == scenario.provider.endpoints.clientId)

            // Counted under their own protocol in the metrics.
            let metrics = try await runCommand("/usr/bin/curl", ["-s", "--unix-socket", scenario.broker.socketPath, "http://localhost/metrics"])
            #expect(metrics.stdout.contains(#"op="imds""#) && metrics.stdout.contains(#"op="app_service""#), "\(metrics.stdout.prefix(2000))")

            // Neither the token nor the header secret reaches the (debug-level) log.
            let log = scenario.broker.process.stderr
            let token = try #require(imds.body["access_token"] as? String)
            #expect(!log.contains(token.split(separator: ".")[1]) && !log.contains(variables["IDENTITY_HEADER"]!))
        }
    }

    @Test("garbage, TLS bytes and an oversized head on the TCP listener get an error and a close; the next client is served")
    func badInputOnTCP() async throws {
        try await Self.run { scenario, _ in
            let variables = try await Self.brokerEnvironment(scenario)
            let port = try #require(URL(string: variables["AZURE_POD_IDENTITY_AUTHORITY_HOST"]!)?.port)
            let tlsHello: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]
            for bytes in [
                tlsHello, Array("NOT HTTP AT ALL\r\n\r\n".utf8), Array("GET / HTTP/1.1\r\nX: \(String(repeating: "a", count: 70_000))\r\n\r\n".utf8),
            ] {
                let answer = try await offPool { try Self.tcpExchange(port: port, bytes) }
                #expect(answer.hasPrefix("HTTP/1.1 4"), "\(answer.prefix(80))")
            }
            let good = try await Self.curl(["-H", "Metadata: true", Self.imdsURL(variables)])
            #expect(good.status == 200)
        }
    }

    /// Sends `bytes` to 127.0.0.1:`port` and reads until the server closes.
    static func tcpExchange(port: Int, _ bytes: [UInt8]) throws -> String {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw HarnessError("connect failed: \(errno)") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = bytes.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            guard count > 0 else { break }
            received += buffer[..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }

    @Test("on loopback TCP the caller's uid comes from the kernel's socket table; the Unix compat socket uses peer credentials")
    func callerIdentityOnBothListeners() async throws {
        try await Self.run(identities: { _, provider in
            [
                BrokerDaemon.Identity(
                    name: "nobody-only", tokenFile: provider.endpoints.tokenFile, allow: "[ { uid: 65534 } ]", clientId: Self.userAssignedClientId)
            ]
        }) { scenario, compatSocket in
            let variables = try await Self.brokerEnvironment(scenario)
            let url = Self.imdsURL(variables, "api-version=2018-02-01&resource=\(Self.resource)&client_id=\(Self.userAssignedClientId)")
            let asRoot = try await Self.curl(["-H", "Metadata: true", url])
            #expect(asRoot.status == 403, "root is not in the identity's allow list")
            #expect((asRoot.body["error_description"] as? String)?.contains("may not use identity 'nobody-only'") == true)

            let asNobody = try await runCommand(
                "/usr/bin/setpriv", ["--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/curl", "-s", "-H", "Metadata: true", url])
            let body = try JSONSerialization.jsonObject(with: Data(asNobody.stdout.utf8)) as? [String: Any]
            #expect((body?["access_token"] as? String)?.hasPrefix("ey") == true, "uid 65534 is allowed: \(asNobody.stdout)")

            // The Unix compat socket: root (the default identity's default rule) gets a token.
            let unix = try await Self.curl([
                "--unix-socket", compatSocket, "-H", "Metadata: true",
                "http://localhost/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(Self.resource)&client_id=\(scenario.provider.endpoints.clientId)",
            ])
            #expect(unix.status == 200)
            #expect((unix.body["access_token"] as? String)?.hasPrefix("ey") == true)
        }
    }
}
