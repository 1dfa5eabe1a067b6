import Foundation
import Testing

/// Third-party clients nobody here wrote, against the same dev token service.
@Suite("Interop with azure-identity")
struct InteropTests {
    @Test("azure-identity's WorkloadIdentityCredential gets a token and sends the same form fields as the broker")
    func workloadIdentityCredential() async throws {
        try await Scenario.run { scenario in
            let endpoints = scenario.provider.endpoints
            var environment = ProcessInfo.processInfo.environment
            environment["REQUESTS_CA_BUNDLE"] = endpoints.caFile
            let pythonScope = "https://python.example/.default"
            let python = try await runCommand(
                TestEnvironment.python,
                [
                    "\(TestEnvironment.fixtures)/python/workload_identity.py", endpoints.tenantId, endpoints.clientId, endpoints.tokenFile,
                    endpoints.authorityHost, pythonScope,
                ],
                environment: environment)
            #expect(python.status == 0, "azure-identity failed: \(python.stderr)")
            let pythonToken = try JSONSerialization.jsonObject(with: Data(python.stdout.utf8)) as? [String: Any]
            #expect((pythonToken?["token"] as? String)?.hasPrefix("ey") == true)

            let brokerScope = "https://broker.example/.default"
            #expect(try await scenario.broker.request(#"{"op":"token","scope":"\#(brokerScope)"}"#).ok)

            let requests = try await scenario.provider.stats().requests
            let fromPython = try #require(requests.first { $0.scope == pythonScope })
            let fromBroker = try #require(requests.first { $0.scope == brokerScope })
            #expect(fromPython.status == 200 && fromBroker.status == 200)
            #expect(Set(fromPython.fields) == Set(fromBroker.fields), "python sent \(fromPython.fields), the broker \(fromBroker.fields)")
            #expect(Set(fromBroker.fields) == ["client_id", "scope", "client_assertion_type", "client_assertion", "grant_type"])
            #expect(fromPython.grantType == fromBroker.grantType)
            #expect(fromPython.clientAssertionType == fromBroker.clientAssertionType)
            #expect(fromPython.clientId == fromBroker.clientId)
            #expect(fromPython.assertionSha256 == fromBroker.assertionSha256, "both sent the same assertion file's token")
        }
    }
}
