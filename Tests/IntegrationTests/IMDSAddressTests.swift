import Foundation
import Testing

/// Clients with 169.254.169.254 hard-coded, served by `compat.tcp` bound to that address
/// on the loopback interface of a network namespace the test creates (as a pod has its
/// own): the provider, the broker and the clients run in it; the host's routes, and any
/// real IMDS they lead to, are untouched.
@Suite("Compatibility endpoints at the IMDS address")
struct IMDSAddressTests {
    /// A new network namespace with loopback up and the IMDS address on it; deleted after `body`.
    static func withNamespace(_ body: (_ name: String) async throws -> Void) async throws {
        let name = "tbit-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let ip = "/usr/sbin/ip"
        let added = try await runCommand(ip, ["netns", "add", name])
        guard added.status == 0 else { throw HarnessError("ip netns add \(name): \(added.stderr)") }
        do {
            for step in [["link", "set", "lo", "up"], ["addr", "add", "169.254.169.254/32", "dev", "lo"]] {
                let result = try await runCommand(ip, ["netns", "exec", name, ip] + step)
                guard result.status == 0 else { throw HarnessError("ip \(step.joined(separator: " ")) in \(name): \(result.stderr)") }
            }
            try await body(name)
        } catch {
            _ = try? await runCommand(ip, ["netns", "delete", name])
            throw error
        }
        _ = try await runCommand(ip, ["netns", "delete", name])
    }

    @Test(
        "azure-identity with no environment (and, when their venv exists, azure-identity 1.6.1 and msrestazure) get the broker's token from 169.254.169.254:80"
    )
    func hardCodedIMDSClients() async throws {
        try await Self.withNamespace { netns in
            let directory = try TestEnvironment.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try await Scenario.run(
                extraYAML: "compat: { tcp: \"169.254.169.254:80\", identityHeaderFile: \(directory)/identity-header }", netns: netns
            ) { scenario in
                let socketToken = try await scenario.broker.request(#"{"op":"token","scope":"\#(CompatTests.scope)"}"#)
                #expect(socketToken.ok, "\(socketToken)")
                let status = try await scenario.broker.request(#"{"op":"status"}"#)
                #expect(
                    ((status["status"] as? [String: Any])?["compat"] as? [String: Any])?["imdsAuthorityHost"] as? String
                        == "http://169.254.169.254:80")

                // No AZURE_*, IDENTITY_* or MSI_* variables: the SDK goes to the IMDS address itself.
                let bare = CompatTests.sdkEnvironment([:])
                let current = try await CompatTests.python("managed", environment: bare, netns: netns)
                #expect(current.status == 0, "azure-identity: \(current.stderr)")
                #expect(current.token == socketToken.token)
                if TestEnvironment.hasOldClient(OldClientTests.legacyVenv) {
                    let old = try await CompatTests.python(
                        "managed", environment: bare, interpreter: TestEnvironment.oldClientPython(OldClientTests.legacyVenv), netns: netns)
                    #expect(old.status == 0, "azure-identity 1.6.1: \(old.stderr)")
                    #expect(old.token == socketToken.token)
                    let msrest = try await OldClientTests.msrestazure(bare, netns: netns)
                    #expect(msrest.status == 0, "msrestazure: \(msrest.stderr)")
                    #expect(msrest.token == socketToken.token)
                }
                // A Host naming the address is addressed to this host; any other is still refused.
                let (executable, prefix) = TestEnvironment.command("/usr/bin/curl", inNetworkNamespace: netns)
                let rebound = try await runCommand(
                    executable,
                    prefix + [
                        "-s", "-H", "Metadata: true", "-H", "Host: evil.example",
                        "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(CompatTests.resource)",
                    ])
                #expect(rebound.stdout.contains("Host must name a loopback address"), "\(rebound.stdout)")
            }
        }
    }
}
