import Foundation
import Testing

/// `tokenbroker relay` in front of a node-mode broker, as deploy/kubernetes/node runs it: the
/// relay is a process of a pod (its cgroup, its own uid), and SDKs talking to it get tokens
/// obtained with that pod's projected token.
@Suite("Relay in node mode", .serialized, .enabled(if: CgroupSandbox.isAvailable, "needs a writable cgroup v2 mount (root)"))
struct RelayNodeModeTests {
    @Test("azure-identity through a pod's relay gets the pod's token; another app's client_id gets Entra's refusal as 401")
    func sdkThroughThePodsRelay() async throws {
        try await NodeModeTests.run { node, provider, broker, directory in
            let pod = try await NodeModeTests.startPod(node, provider, account: NodeModeTests.accountA)
            // AZURE_CLIENT_ID in the relay's own environment, as the webhook would put it (callerEnvironment).
            let relay = try await RelayTests.Relay(
                socket: broker.socketPath, directory: directory,
                environment: ["IDENTITY_HEADER": RelayTests.secret, "AZURE_CLIENT_ID": NodeModeTests.appA],
                pod: (pod.cgroup, NodeModeTests.podUID))
            do {
                let direct = try await NodeModeTests.token(broker, from: pod, environment: ["AZURE_CLIENT_ID": NodeModeTests.appA])
                #expect(direct.ok, "\(direct)")
                let variables = try await RelayTests.relayEnvironment(relay)
                let appService = CompatTests.sdkEnvironment(variables.filter { $0.key.hasPrefix("IDENTITY_") })
                let imds = CompatTests.sdkEnvironment(variables.filter { $0.key == "AZURE_POD_IDENTITY_AUTHORITY_HOST" })
                for (route, environment) in [("App Service", appService), ("IMDS", imds)] {
                    let result = try await CompatTests.python("managed", environment: environment)
                    #expect(result.status == 0, "\(route): \(result.stderr)")
                    #expect(result.token == direct.token, "\(route): the relay's pod got the pod's cached token")
                }
                let named = try await CompatTests.curl([
                    "-H", "Metadata: true",
                    "\(relay.url)/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(CompatTests.resource)&client_id=\(NodeModeTests.appA)",
                ])
                #expect(named.status == 200 && named.body["client_id"] as? String == NodeModeTests.appA, "\(named.body)")
                // Pod A's relay asking for pod B's app: Entra refuses A's assertion for it.
                let cross = try await CompatTests.curl([
                    "-H", "X-IDENTITY-HEADER: \(RelayTests.secret)",
                    "\(relay.url)/msi/token?api-version=2019-08-01&resource=\(CompatTests.resource)&client_id=\(NodeModeTests.appB)",
                ])
                #expect(cross.status == 401 && cross.body["access_token"] == nil, "\(cross.body)")
                #expect((cross.body["message"] as? String)?.contains("700213") == true, "\(cross.body)")
            } catch {
                await relay.stop()
                throw error
            }
            await relay.stop()
        }
    }
}
