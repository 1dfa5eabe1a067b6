import Foundation
import OffPool
import Testing

/// `tokenbroker relay`, the pod side of node mode: the App Service, IMDS and AWS protocols on
/// loopback, answered through the broker socket. Real processes: a broker, the relay, and
/// clients nobody here wrote (azure-identity, msal, boto3, curl).
@Suite("Relay")
struct RelayTests {
    static let secret = "relay-secret-0123456789abcdef"

    /// A running `tokenbroker relay`, stopped by PID.
    final class Relay: @unchecked Sendable {
        let process: ChildProcess
        let port: Int
        var url: String { "http://127.0.0.1:\(port)" }

        /// `pod`: started inside that cgroup as that uid (a pod's container), else as the test's own process.
        init(
            socket: String, directory: String, arguments: [String] = [], environment: [String: String] = ["IDENTITY_HEADER": RelayTests.secret],
            pod: (cgroup: String, uid: UInt32)? = nil
        ) async throws {
            var env = ProcessInfo.processInfo.environment.filter { $0.key != "IDENTITY_HEADER" && !$0.key.hasPrefix("AZURE_") }
            env.merge(environment) { _, new in new }
            var command = [TestEnvironment.cliPath, "relay", "--listen", "127.0.0.1:0", "--socket", socket] + arguments
            if let pod {
                // Join the cgroup as root, then become the pod's uid; each step execs, so the PID stays the relay's.
                command =
                    [
                        "/bin/sh", "-c", #"echo $$ > "$0/cgroup.procs" && exec "$@""#, pod.cgroup,
                        "/usr/bin/setpriv", "--reuid", "\(pod.uid)", "--regid", "\(pod.uid)", "--clear-groups",
                    ] + command
            }
            let process = try ChildProcess(
                executable: command[0], arguments: Array(command.dropFirst()),
                environment: env, logDirectory: directory, name: "relay-\(UUID().uuidString.prefix(8))")
            self.process = process
            var port: Int?
            do {
                try await waitUntil("the relay to listen") {
                    guard process.isRunning else { throw HarnessError("relay exited: \(process.stderr)") }
                    guard let line = process.stdout.split(separator: "\n").first(where: { $0.hasPrefix("listening on 127.0.0.1:") }) else {
                        return false
                    }
                    port = Int(line.split(separator: ":").last ?? "")
                    return port != nil
                }
            } catch {
                await process.stop()
                throw error
            }
            self.port = port!
        }

        func stop() async { await process.stop() }

        /// Resident memory from /proc/PID/status, in KiB.
        var residentKiB: Int {
            let status = (try? String(contentsOfFile: "/proc/\(process.process.processIdentifier)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
        }
    }

    /// A broker (the CompatTests scenario, with a second app registration) and a relay in front of it.
    static func run(
        identities: @escaping (_ directory: String, _ provider: DevProvider) async throws -> [BrokerDaemon.Identity] = { _, _ in [] },
        relayArguments: [String] = [],
        _ body: (_ scenario: Scenario, _ relay: Relay) async throws -> Void
    ) async throws {
        try await Scenario.run(extraClientIds: [CompatTests.userAssignedClientId], identities: identities) { scenario in
            let relay = try await Relay(socket: scenario.broker.socketPath, directory: scenario.directory, arguments: relayArguments)
            do { try await body(scenario, relay) } catch {
                await relay.stop()
                throw error
            }
            await relay.stop()
        }
    }

    /// `tokenbroker env --relay URL`, parsed.
    static func relayEnvironment(_ relay: Relay) async throws -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["IDENTITY_HEADER"] = secret
        let result = try await runCommand(TestEnvironment.cliPath, ["env", "--relay", relay.url], environment: environment)
        #expect(result.status == 0, "tokenbroker env --relay failed: \(result.stderr)")
        var variables: [String: String] = [:]
        for line in result.stdout.split(separator: "\n") where line.hasPrefix("export ") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            variables[String(line[line.index(line.startIndex, offsetBy: 7)..<equals])] = String(line[line.index(after: equals)...])
                .trimmingCharacters(in: CharacterSet(charactersIn: "'"))
        }
        return variables
    }

    @Test("azure-identity and msal get the socket's token through the relay, over App Service and IMDS, with one exchange")
    func sdksGetTheSocketsToken() async throws {
        try await Self.run { scenario, relay in
            let socketToken = try await scenario.broker.request(#"{"op":"token","scope":"\#(CompatTests.scope)"}"#)
            #expect(socketToken.ok)
            let variables = try await Self.relayEnvironment(relay)
            #expect(
                variables == [
                    "IDENTITY_ENDPOINT": "\(relay.url)/msi/token", "IDENTITY_HEADER": Self.secret, "AZURE_POD_IDENTITY_AUTHORITY_HOST": relay.url,
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI": "\(relay.url)/aws/credentials", "AWS_CONTAINER_AUTHORIZATION_TOKEN": Self.secret,
                ])
            let appService = CompatTests.sdkEnvironment(variables.filter { $0.key != "AZURE_POD_IDENTITY_AUTHORITY_HOST" })
            let imds = CompatTests.sdkEnvironment(variables.filter { $0.key == "AZURE_POD_IDENTITY_AUTHORITY_HOST" })
            for (client, environment, route) in [
                ("managed", appService, "App Service"), ("managed", imds, "IMDS"), ("default", appService, "App Service"),
                ("msal", appService, "App Service"), ("msal", imds, "IMDS"), ("probe", imds, "IMDS after the header-less probe"),
            ] {
                let result = try await CompatTests.python(client, environment: environment)
                #expect(result.status == 0, "\(client) via \(route): \(result.stderr)")
                #expect(result.token == socketToken.token, "\(client) via \(route) got a different token")
            }
            // With the app's client id (what AZURE_CLIENT_ID gives most SDKs): the same token, and the id in the answer.
            let named = try await CompatTests.python("managed", clientId: scenario.provider.endpoints.clientId, environment: appService)
            #expect(named.token == socketToken.token, "\(named.stderr)")
            #expect(try await scenario.provider.stats().byScope[CompatTests.scope] == 1, "every client was served from the one cached token")
        }
    }

    @Test("answers have the daemon's field sets and string types; a client id the broker does not serve is 'Identity not found'")
    func answersMatchTheCompatEndpoints() async throws {
        try await Self.run { scenario, relay in
            let imdsURL = "\(relay.url)/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(CompatTests.resource)"
            let imds = try await CompatTests.curl(["-H", "Metadata: true", imdsURL])
            #expect(imds.status == 200)
            #expect(
                Set(imds.body.keys) == [
                    "access_token", "refresh_token", "expires_in", "expires_on", "not_before", "resource", "token_type", "client_id",
                ])
            #expect(imds.body.values.allSatisfy { $0 is String }, "IMDS sends strings: \(imds.body.mapValues { type(of: $0) })")
            let expiresIn = Int(imds.body["expires_in"] as? String ?? "") ?? 0
            #expect(expiresIn > 3000 && expiresIn <= 3600)
            #expect(imds.body["client_id"] as? String == scenario.provider.endpoints.clientId)

            let appService = try await CompatTests.curl([
                "-H", "X-IDENTITY-HEADER: \(Self.secret)", "\(relay.url)/msi/token?api-version=2019-08-01&resource=\(CompatTests.resource)",
            ])
            #expect(appService.status == 200)
            #expect(Set(appService.body.keys) == ["access_token", "expires_on", "not_before", "resource", "token_type", "client_id"])
            #expect(appService.body["access_token"] as? String == imds.body["access_token"] as? String)

            let other = try await CompatTests.curl(["-H", "Metadata: true", "\(imdsURL)&client_id=\(CompatTests.userAssignedClientId)"])
            #expect(other.status == 400 && other.body["access_token"] == nil)
            #expect(other.body["error_description"] as? String == "Identity not found")
            let byObjectId = try await CompatTests.curl(["-H", "Metadata: true", "\(imdsURL)&object_id=0b1ec700-0000-4000-8000-000000000001"])
            #expect(byObjectId.status == 400)
            #expect((byObjectId.body["error_description"] as? String)?.contains("selects the identity by client id") == true, "\(byObjectId.body)")
        }
    }

    @Test("with several identities the client_id picks one, as on the daemon's endpoints; without it the SDK is told to pass one")
    func clientIdPicksAmongSeveral() async throws {
        try await Self.run(identities: { _, provider in
            [BrokerDaemon.Identity(name: "storage", tokenFile: provider.endpoints.tokenFile, clientId: CompatTests.userAssignedClientId)]
        }) { scenario, relay in
            let appService = CompatTests.sdkEnvironment(try await Self.relayEnvironment(relay).filter { $0.key.hasPrefix("IDENTITY_") })
            let picked = try await CompatTests.python("managed", clientId: CompatTests.userAssignedClientId, environment: appService)
            #expect(picked.status == 0, "\(picked.stderr)")
            let socket = try await scenario.broker.request(#"{"op":"token","identity":"storage","scope":"\#(CompatTests.scope)"}"#)
            #expect(picked.token == socket.token)
            let ambiguous = try await CompatTests.python("managed", environment: appService)
            #expect(ambiguous.status == 1 && ambiguous.stderr.contains("pass client_id"), "\(ambiguous.stderr)")
        }
    }

    @Test("the anti-SSRF headers are required: IMDS without Metadata is 400, a wrong identity header 401, and no exchange happens")
    func antiSSRFHeaders() async throws {
        try await Self.run { scenario, relay in
            var variables = try await Self.relayEnvironment(relay)
            variables["IDENTITY_HEADER"] = "not-the-secret"
            let wrong = try await CompatTests.python(
                "managed", environment: CompatTests.sdkEnvironment(variables.filter { $0.key != "AZURE_POD_IDENTITY_AUTHORITY_HOST" }))
            #expect(wrong.status == 1 && wrong.token == nil)
            #expect(wrong.stderr.contains("X-IDENTITY-HEADER is missing or wrong"), "\(wrong.stderr)")
            let appServiceURL = "\(relay.url)/msi/token?api-version=2019-08-01&resource=\(CompatTests.resource)"
            let noHeader = try await CompatTests.curl([appServiceURL])
            #expect(noHeader.status == 401 && noHeader.body["statusCode"] as? Int == 401)
            let wrongHeader = try await CompatTests.curl(["-H", "X-IDENTITY-HEADER: \(Self.secret)x", appServiceURL])
            #expect(wrongHeader.status == 401 && wrongHeader.body["access_token"] == nil)
            let noMetadata = try await CompatTests.curl([
                "\(relay.url)/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(CompatTests.resource)"
            ])
            #expect(noMetadata.status == 400 && noMetadata.body["access_token"] == nil)
            #expect(noMetadata.body["error_description"] as? String == "Required metadata header not specified")
            let aws = try await CompatTests.curl(["\(relay.url)/aws/credentials"])
            #expect(aws.status == 401)
            let elsewhere = try await CompatTests.curl(["-H", "Metadata: true", "\(relay.url)/metadata/instance?api-version=2021-02-01"])
            #expect(elsewhere.status == 404)
            // DNS rebinding: a page whose name resolves to 127.0.0.1 sends its own name; a proxy-style target is no request for us.
            let imdsPath = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(CompatTests.resource)"
            let rebound = try await CompatTests.curl(["-H", "Metadata: true", "-H", "Host: evil.example", "\(relay.url)\(imdsPath)"])
            #expect(rebound.status == 400 && rebound.body["access_token"] == nil, "\(rebound.body)")
            #expect((rebound.body["error_description"] as? String)?.contains("Host must name a loopback address") == true)
            let proxied = try await offPool {
                try CompatTests.tcpExchange(
                    port: relay.port,
                    Array("GET http://127.0.0.1:\(relay.port)\(imdsPath) HTTP/1.1\r\nHost: 127.0.0.1\r\nMetadata: true\r\n\r\n".utf8))
            }
            #expect(proxied.hasPrefix("HTTP/1.1 400 ") && !proxied.contains("access_token"), "\(proxied.prefix(200))")
            #expect(try await scenario.provider.stats().tokenRequests == 0, "no exchange happened for any refused request")
        }
    }

    @Test("another user's process is refused (403, with what to do) unless --peers any; the relay's own user and root are served")
    func otherUsersAreRefused() async throws {
        let imds = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(CompatTests.resource)"
        let asOtherUser = { (relay: Relay) in
            try await OtherUser.run(
                ["/usr/bin/curl", "-s", "-w", "\n%{http_code}", "-H", "Metadata: true", "\(relay.url)\(imds)"], uid: 4311, gid: 4311, groups: nil)
        }
        try await Self.run { scenario, relay in
            let refused = try await asOtherUser(relay)
            #expect(refused.stdout.hasSuffix("\n403") && !refused.stdout.contains("access_token"), "\(refused.stdout)")
            #expect(refused.stdout.contains("not uid 4311") && refused.stdout.contains("--peers any"), "\(refused.stdout)")
            let own = try await CompatTests.curl(["-H", "Metadata: true", "\(relay.url)\(imds)"])
            #expect(own.status == 200 && own.body["access_token"] != nil, "the relay's own user (root here)")
        }
        try await Self.run(relayArguments: ["--peers", "any"]) { _, relay in
            let served = try await asOtherUser(relay)
            #expect(served.stdout.hasSuffix("\n200") && served.stdout.contains("access_token"), "\(served.stdout.suffix(200))")
        }
    }

    @Test("/healthz is 200 while the broker answers and 503 once it stops; --check exits 0 then 1; SDKs get a retryable 503")
    func healthFollowsTheBroker() async throws {
        try await Self.run(relayArguments: ["--broker-wait", "1"]) { scenario, relay in
            let healthy = try await CompatTests.curl(["\(relay.url)/healthz"])
            #expect(healthy.status == 200 && healthy.body["ok"] as? Bool == true)
            let check = try await runCommand(TestEnvironment.cliPath, ["relay", "--listen", "127.0.0.1:\(relay.port)", "--check"])
            #expect(check.status == 0, "\(check.stderr)")

            _ = await scenario.broker.stop()
            let down = try await CompatTests.curl(["\(relay.url)/healthz"])
            #expect(down.status == 503 && down.body["ok"] as? Bool == false, "\(down.body)")
            let failing = try await runCommand(TestEnvironment.cliPath, ["relay", "--listen", "127.0.0.1:\(relay.port)", "--check"])
            #expect(failing.status == 1 && failing.stderr.contains("not healthy"), "\(failing.stderr)")
            let token = try await CompatTests.curl([
                "-H", "Metadata: true", "\(relay.url)/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(CompatTests.resource)",
            ])
            #expect(token.status == 503 && token.body["error"] as? String == "broker_unavailable", "\(token.body)")
            #expect(relay.process.isRunning, "the relay outlives its broker and recovers when one is back")
        }
    }

    @Test("a request sent while the broker is being replaced waits for the new one instead of failing")
    func ridesThroughABrokerRestart() async throws {
        try await Self.run { scenario, relay in
            let url = "\(relay.url)/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(CompatTests.resource)"
            #expect(try await CompatTests.curl(["-H", "Metadata: true", url]).status == 200)
            _ = await scenario.broker.stop()
            let pending = Task { () async throws -> (status: Int, token: String?, body: String) in
                let answer = try await CompatTests.curl(["-H", "Metadata: true", url])
                return (answer.status, answer.body["access_token"] as? String, "\(answer.body)")
            }
            try await Task.sleep(for: .milliseconds(500))
            let replacement = try await BrokerDaemon(
                directory: scenario.directory, provider: scenario.provider,
                identities: [BrokerDaemon.Identity(name: "default", tokenFile: scenario.provider.endpoints.tokenFile)])
            let result = await pending.result
            _ = await replacement.stop()
            let answer = try result.get()
            #expect(answer.status == 200, "\(answer.body)")
            #expect(answer.token?.hasPrefix("ey") == true)
        }
    }

    @Test("only loopback addresses, and only with an identity header secret")
    func refusesWhatItShouldNot() async throws {
        for address in ["0.0.0.0:0", "10.1.2.3:8181", "[::]:0", "[::ffff:127.0.0.1]:0", "localhost:8181", "127.0.0.1"] {
            let result = try await runCommand(TestEnvironment.cliPath, ["relay", "--listen", address], environment: ["IDENTITY_HEADER": Self.secret])
            #expect(result.status == 64, "\(address): \(result.stderr)")
        }
        let noSecret = try await runCommand(TestEnvironment.cliPath, ["relay", "--listen", "127.0.0.1:0"], environment: [:])
        #expect(noSecret.status == 64 && noSecret.stderr.contains("IDENTITY_HEADER"), "\(noSecret.stderr)")
        let shortSecret = try await runCommand(
            TestEnvironment.cliPath, ["relay", "--listen", "127.0.0.1:0"], environment: ["IDENTITY_HEADER": "short"])
        #expect(shortSecret.status == 64)
        let remoteEnv = try await runCommand(
            TestEnvironment.cliPath, ["env", "--relay", "http://10.0.0.1:8181"], environment: ["IDENTITY_HEADER": Self.secret])
        #expect(remoteEnv.status == 64)
    }

    @Test("bad heads get 400 or 431 and a close; keep-alive serves several requests on one connection; the next client is served")
    func badInputAndKeepAlive() async throws {
        try await Self.run { _, relay in
            for (bytes, status) in [
                (Array("NOT HTTP AT ALL\r\n\r\n".utf8), "400"), (Array("GET / HTTP/2.0\r\n\r\n".utf8), "400"),
                (Array("GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".utf8), "400"),
                (Array("GET /healthz HTTP/1.1\r\nX : y\r\n\r\n".utf8), "400"),
                (Array("GET / HTTP/1.1\r\nX: \(String(repeating: "a", count: 20_000))\r\n\r\n".utf8), "431"),
            ] {
                let answer = try await offPool { try CompatTests.tcpExchange(port: relay.port, bytes) }
                #expect(answer.hasPrefix("HTTP/1.1 \(status) "), "\(answer.prefix(80))")
            }
            // Two requests pipelined on one connection, the second asking to close: two answers, in order.
            let pipelined =
                "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: localhost:\(relay.port)\r\nConnection: close\r\n\r\n"
            let answers = try await offPool { try CompatTests.tcpExchange(port: relay.port, Array(pipelined.utf8)) }
            #expect(answers.hasPrefix("HTTP/1.1 200 ") && answers.contains("HTTP/1.1 404 ") && answers.contains("Connection: close"), "\(answers)")
            let good = try await CompatTests.curl(["\(relay.url)/healthz"])
            #expect(good.status == 200)
        }
    }

    @Test("connections beyond --max-connections get 503 at once; a slot frees when a client leaves")
    func connectionCap() async throws {
        try await Self.run(relayArguments: ["--max-connections", "1"]) { _, relay in
            let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(relay.port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(holder, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            #expect(connected == 0)
            try await Task.sleep(for: .milliseconds(200))  // accepted: it holds the only slot
            let refused = try await CompatTests.curl(["\(relay.url)/healthz"])
            #expect(refused.status == 503 && refused.body["error"] as? String == "too_many_connections", "\(refused.body)")
            close(holder)
            // 60 s, not 10: in the full suite on two cores the pool that runs curl for this test
            // can be starved for tens of seconds (it once took 55 s there, 7 s alone); a slot that
            // never frees still fails it.
            try await waitUntil(timeout: .seconds(60), "the slot to free") { try await CompatTests.curl(["\(relay.url)/healthz"]).status == 200 }
        }
    }

    @Test("boto3 gets the broker's AWS credentials through the relay's container-credentials endpoint")
    func boto3GetsCredentials() async throws {
        try await AWSTests.run { scenario, moto, _ in
            let relay = try await Relay(socket: scenario.broker.socketPath, directory: scenario.directory)
            do {
                let reply = try await scenario.broker.request(#"{"op":"token","identity":"aws"}"#)
                let accessKey = try #require((reply["credentials"] as? [String: Any])?["accessKeyId"] as? String)
                let variables = try await Self.relayEnvironment(relay)
                let viaRelay = try await AWSTests.boto3(moto, environment: variables.filter { $0.key.hasPrefix("AWS_CONTAINER_") })
                #expect(viaRelay["method"] == "container-role")
                #expect(viaRelay["accessKeyId"] == accessKey, "the relay served the broker's cached credentials")
                let wrong = try await CompatTests.curl(["-H", "Authorization: nope", "\(relay.url)/aws/credentials"])
                #expect(wrong.status == 401 && wrong.body["AccessKeyId"] == nil)
            } catch {
                await relay.stop()
                throw error
            }
            await relay.stop()
        }
    }

    @Test("resident memory of an idle relay, and after serving (printed; debug build)")
    func residentMemory() async throws {
        try await Self.run { _, relay in
            try await Task.sleep(for: .milliseconds(200))
            let idle = relay.residentKiB
            for _ in 0..<20 {
                _ = try await CompatTests.curl([
                    "-H", "Metadata: true", "\(relay.url)/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(CompatTests.resource)",
                ])
            }
            let served = relay.residentKiB
            print("relay RSS: idle \(idle) KiB, after 20 token requests \(served) KiB (\(TestEnvironment.binDirectory))")
            #expect(idle > 0 && served > 0)
        }
    }
}
