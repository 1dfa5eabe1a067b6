import Foundation
import Testing

/// AWS STS `AssumeRoleWithWebIdentity` against moto_server on loopback, and boto3 —
/// a real client — getting the credentials through the container-credentials
/// endpoint and through `credential_process`.
@Suite("AWS STS and AWS SDK credentials")
struct AWSTests {
    static let role = "arn:aws:iam::123456789012:role/tokenbroker-test"

    /// moto_server (pip moto) on 127.0.0.1 at a free port.
    final class Moto: @unchecked Sendable {
        let process: ChildProcess
        let endpoint: String

        init(directory: String) async throws {
            let portFile = "\(directory)/moto-port"
            process = try ChildProcess(
                executable: TestEnvironment.python, arguments: ["\(TestEnvironment.fixtures)/python/moto_sts.py", portFile], logDirectory: directory,
                name: "moto")
            let process = self.process
            try await waitUntil("moto_server to listen") {
                guard process.isRunning else { throw HarnessError("moto exited: \(process.stderr)") }
                return FileManager.default.fileExists(atPath: portFile)
            }
            endpoint = "http://127.0.0.1:\(try String(contentsOfFile: portFile, encoding: .utf8))"
        }

        func stop() async { _ = await process.stop() }
    }

    /// A broker whose identity `aws` exchanges at moto (beside the scenario's Entra `default`),
    /// allowed to the callers `allow` names (nil: the default rule), with the compat endpoints on TCP.
    static func run(allow: String? = nil, _ body: (_ scenario: Scenario, _ moto: Moto, _ directory: String) async throws -> Void) async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let moto = try await Moto(directory: directory)
        do {
            try await Scenario.run(
                identities: { _, provider in
                    [
                        BrokerDaemon.Identity(
                            name: "aws", tokenFile: provider.endpoints.tokenFile, allow: allow,
                            exchangeYAML: "{ awsSts: { roleArn: \"\(Self.role)\", endpoint: \"\(moto.endpoint)\", sessionName: \"tb-{identity}\" } }")
                    ]
                },
                extraYAML: "compat: { tcp: \"127.0.0.1:0\", identityHeaderFile: \(directory)/identity-header }", allowInsecureLoopback: true
            ) { scenario in try await body(scenario, moto, directory) }
        } catch {
            await moto.stop()
            throw error
        }
        await moto.stop()
    }

    static func boto3(_ moto: Moto, environment extra: [String: String]) async throws -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("AWS_") }
        environment.merge(extra) { _, new in new }
        let result = try await runCommand(
            TestEnvironment.python, ["\(TestEnvironment.fixtures)/python/aws_client.py", moto.endpoint], environment: environment)
        #expect(result.status == 0, "boto3: \(result.stderr)")
        return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: String]) ?? [:]
    }

    @Test("the socket's token op returns AWS credentials from moto's STS; boto3 gets the same through the container endpoint and credential_process")
    func boto3GetsCredentials() async throws {
        try await Self.run { scenario, moto, directory in
            let reply = try await scenario.broker.request(#"{"op":"token","identity":"aws"}"#)
            #expect(reply.ok, "\(reply)")
            let credentials = try #require(reply["credentials"] as? [String: Any])
            let accessKey = try #require(credentials["accessKeyId"] as? String)
            #expect(accessKey.hasPrefix("ASIA"))
            #expect(credentials["accountId"] as? String == "123456789012")
            #expect(reply.token == nil)

            // Container credentials, as `tokenbroker env --identity aws` sets them up.
            let env = try await CompatTests.brokerEnvironment(scenario, identity: "aws")
            #expect(env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]?.hasSuffix("/aws/credentials/aws") == true)
            let viaContainer = try await Self.boto3(moto, environment: env.filter { $0.key.hasPrefix("AWS_CONTAINER_") })
            #expect(viaContainer["method"] == "container-role")
            #expect(viaContainer["accessKeyId"] == accessKey, "the container endpoint served the cached credentials")
            #expect(viaContainer["arn"]?.contains("assumed-role/tokenbroker-test/tb-aws") == true, "\(viaContainer)")

            // credential_process in ~/.aws/config.
            let config = "\(directory)/aws-config"
            try """
            [profile broker]
            credential_process = \(TestEnvironment.cliPath) get --socket \(scenario.broker.socketPath) --identity aws --output aws-credential-process
            """.write(toFile: config, atomically: true, encoding: .utf8)
            let viaProcess = try await Self.boto3(
                moto, environment: ["AWS_CONFIG_FILE": config, "AWS_PROFILE": "broker", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"])
            #expect(viaProcess["method"] == "custom-process")
            #expect(viaProcess["accessKeyId"] == accessKey)

            // A scope makes no sense for an AWS identity; an Azure-style request says so.
            let withScope = try await scenario.broker.request(#"{"op":"token","identity":"aws","scope":"https://storage.azure.com/.default"}"#)
            #expect(withScope.errorCode == "bad_request")
            #expect(withScope.errorMessage.contains("leave out 'scope'"))
        }
    }

    @Test("the container endpoint wants its Authorization token, and no credentials leave without it")
    func containerEndpointNeedsTheToken() async throws {
        try await Self.run { scenario, _, _ in
            let env = try await CompatTests.brokerEnvironment(scenario, identity: "aws")
            let url = try #require(env["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
            let missing = try await CompatTests.curl([url])
            #expect(missing.status == 401 && missing.body["AccessKeyId"] == nil)
            let wrong = try await CompatTests.curl(["-H", "Authorization: nope", url])
            #expect(wrong.status == 401)
            let right = try await CompatTests.curl(["-H", "Authorization: \(env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]!)", url])
            #expect(right.status == 200)
            #expect(Set(right.body.keys) == ["AccessKeyId", "SecretAccessKey", "Token", "Expiration", "AccountId"])
            #expect(!scenario.broker.process.stderr.contains(right.body["SecretAccessKey"] as? String ?? "?"), "a secret key reached the log")
        }
    }
}
