import Foundation
import Testing

/// One Entra identity and one AWS identity for the same caller: requests that name no
/// identity choose among those of the kind they ask for, through real clients
/// (azure-identity, `tokenbroker get`, boto3), and requests for the other kind are told so.
@Suite("Access-token and AWS identities side by side")
struct MixedKindTests {
    static let nobody: UInt32 = 65534

    /// The AWS identity `aws` (root and nobody) beside the scenario's Entra `default` (root only).
    static func run(_ body: (_ scenario: Scenario, _ moto: AWSTests.Moto, _ directory: String) async throws -> Void) async throws {
        try await AWSTests.run(allow: "[ { uid: 0 }, { uid: \(nobody) } ]", body)
    }

    @Test("azure-identity, tokenbroker get and boto3 each get their kind with no identity named")
    func eachClientGetsItsKind() async throws {
        try await Self.run { scenario, moto, directory in
            let socket = scenario.broker.socketPath
            let variables = try await CompatTests.brokerEnvironment(scenario)
            #expect(variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"]?.hasSuffix("/aws/credentials") == true, "no identity named: the endpoint chooses")

            let appService = try await CompatTests.python(
                "managed", environment: CompatTests.sdkEnvironment(variables.filter { $0.key != "AZURE_POD_IDENTITY_AUTHORITY_HOST" }))
            #expect(appService.status == 0, "azure-identity over App Service: \(appService.stderr)")
            let imds = try await CompatTests.python(
                "managed", environment: CompatTests.sdkEnvironment(variables.filter { $0.key == "AZURE_POD_IDENTITY_AUTHORITY_HOST" }))
            #expect(imds.status == 0, "azure-identity over IMDS: \(imds.stderr)")
            let get = try await runCommand(TestEnvironment.cliPath, ["get", "--socket", socket, "--scope", CompatTests.scope])
            #expect(get.status == 0, "tokenbroker get --scope: \(get.stderr)")
            #expect(get.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == appService.token)
            #expect(imds.token == appService.token)

            let process = try await runCommand(TestEnvironment.cliPath, ["get", "--socket", socket, "--output", "aws-credential-process"])
            #expect(process.status == 0, "tokenbroker get --output aws-credential-process: \(process.stderr)")
            let document = try JSONSerialization.jsonObject(with: Data(process.stdout.utf8)) as? [String: Any]
            let accessKey = try #require(document?["AccessKeyId"] as? String)
            let viaContainer = try await AWSTests.boto3(moto, environment: variables.filter { $0.key.hasPrefix("AWS_CONTAINER_") })
            #expect(viaContainer["method"] == "container-role" && viaContainer["accessKeyId"] == accessKey, "\(viaContainer)")
            let config = "\(directory)/aws-config"
            try "[profile broker]\ncredential_process = \(TestEnvironment.cliPath) get --socket \(socket) --output aws-credential-process\n"
                .write(toFile: config, atomically: true, encoding: .utf8)
            let viaProcess = try await AWSTests.boto3(
                moto, environment: ["AWS_CONFIG_FILE": config, "AWS_PROFILE": "broker", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"])
            #expect(viaProcess["method"] == "custom-process" && viaProcess["accessKeyId"] == accessKey, "\(viaProcess)")
        }
    }

    @Test("asking an identity for the other kind says which kind it gives; a TCP caller is named by its uid alone, and audited so")
    func wrongKindMessages() async throws {
        try await Self.run { scenario, _, _ in
            let variables = try await CompatTests.brokerEnvironment(scenario)
            let secret = try #require(variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"])
            let base = try #require(variables["AZURE_POD_IDENTITY_AUTHORITY_HOST"])
            let entraAsAWS = try await CompatTests.curl(["-H", "Authorization: \(secret)", "\(base)/aws/credentials/default"])
            #expect(entraAsAWS.status == 400)
            #expect(entraAsAWS.body["message"] as? String == "identity 'default' gives access tokens, not AWS credentials")
            let awsWithScope = try await scenario.broker.request(#"{"op":"token","identity":"aws","scope":"\#(CompatTests.scope)"}"#)
            #expect(awsWithScope.errorCode == "bad_request")
            #expect(awsWithScope.errorMessage == "identity 'aws' gives AWS credentials for \(AWSTests.role), not access tokens; leave out 'scope'")

            // nobody may use only the AWS identity: IMDS has nothing for it, and says so.
            let imds = CompatTests.imdsURL(variables)
            let onlyAWS = try await runCommand(
                "/usr/bin/setpriv",
                ["--reuid", "\(Self.nobody)", "--regid", "\(Self.nobody)", "--clear-groups", "/usr/bin/curl", "-s", "-H", "Metadata: true", imds])
            let onlyAWSBody = try JSONSerialization.jsonObject(with: Data(onlyAWS.stdout.utf8)) as? [String: Any]
            #expect(onlyAWSBody?["error"] as? String == "forbidden", "\(onlyAWS.stdout)")
            #expect(
                onlyAWSBody?["error_description"] as? String
                    == "no identity that gives access tokens is available to caller uid \(Self.nobody); yours give AWS credentials (aws)")
            let named = try await runCommand(
                "/usr/bin/setpriv",
                [
                    "--reuid", "\(Self.nobody)", "--regid", "\(Self.nobody)", "--clear-groups", "/usr/bin/curl", "-s", "-H", "Metadata: true",
                    CompatTests.imdsURL(
                        variables, "api-version=2018-02-01&resource=\(CompatTests.resource)&client_id=\(scenario.provider.endpoints.clientId)"),
                ])
            let namedBody = try JSONSerialization.jsonObject(with: Data(named.stdout.utf8)) as? [String: Any]
            #expect(
                namedBody?["error_description"] as? String
                    == "caller uid \(Self.nobody) may not use identity 'default'; identities available to you: aws", "\(named.stdout)")
            // The audit records say what is known of a TCP caller: its uid, no gid or pid.
            let log = scenario.broker.process.stderr
            let denials = log.split(separator: "\n").filter { $0.contains("token denied") && $0.contains("peer.uid=\(Self.nobody)") }
            #expect(denials.count == 2, "\(log.suffix(2000))")
            #expect(!log.contains("peer.gid=4294967295") && !log.contains("peer.pid=0 "), "\(log.suffix(2000))")
        }
    }
}
