import Foundation
import Testing

/// Who is calling on the loopback compatibility listener, and restarting it.
@Suite("Compatibility listener: TCP callers and restarts", .serialized)
struct CompatPeerTests {
    static let callerUID: UInt32 = 4121

    @Test("an IPv6 socket to ::ffff:127.0.0.1 (Java's and .NET's default) is known by its uid", arguments: ["127.0.0.1", "[::ffff:127.0.0.1]"])
    func ipv4MappedCallerIsKnown(_ host: String) async throws {
        try await CompatTests.run(identities: { _, provider in
            [.init(name: "by-uid", tokenFile: provider.endpoints.tokenFile, allow: "[ { uid: \(Self.callerUID) } ]")]
        }) { scenario, _ in
            let variables = try await CompatTests.brokerEnvironment(scenario)
            let base = try #require(variables["AZURE_POD_IDENTITY_AUTHORITY_HOST"])  // http://127.0.0.1:PORT
            let port = try #require(base.split(separator: ":").last)
            let url = "http://\(host):\(port)/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(CompatTests.resource)"
            let result = try await OtherUser.run(
                ["/usr/bin/curl", "-s", "-H", "Metadata: true", url], uid: Self.callerUID, gid: Self.callerUID, groups: nil)
            let body = (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
            #expect((body["access_token"] as? String)?.hasPrefix("ey") == true, "uid \(Self.callerUID) over \(host): \(result.stdout)")
        }
    }

    @Test("the broker restarts on the same compat port while the last run's connections sit in TIME-WAIT")
    func restartWithConnectionsInTimeWait() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let provider = try await DevProvider(directory: directory)
        let identities = [BrokerDaemon.Identity(name: "default", tokenFile: provider.endpoints.tokenFile)]
        do {
            let first = try await BrokerDaemon(
                directory: directory, provider: provider, identities: identities,
                extraYAML: "compat: { tcp: \"127.0.0.1:0\", identityHeaderFile: \(directory)/identity-header }")
            let port = try await Self.compatPort(first)
            // The broker closes this one (Connection: close): its end waits in TIME-WAIT.
            let closed = try await runCommand(
                "/usr/bin/curl",
                [
                    "-s", "-H", "Metadata: true", "-H", "Connection: close",
                    "http://127.0.0.1:\(port)/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(CompatTests.resource)",
                ])
            #expect(closed.stdout.contains("access_token"))
            #expect(await first.stop() == 0)

            let second = try await BrokerDaemon(
                directory: directory, provider: provider, identities: identities,
                extraYAML: "compat: { tcp: \"127.0.0.1:\(port)\", identityHeaderFile: \(directory)/identity-header }")
            #expect(try await Self.compatPort(second) == port)
            #expect(await second.stop() == 0)
        } catch {
            await provider.stop()
            throw error
        }
        await provider.stop()
    }

    static func compatPort(_ broker: BrokerDaemon) async throws -> Int {
        let status = try await broker.request(#"{"op":"status"}"#)
        let compat = (status["status"] as? [String: Any])?["compat"] as? [String: Any]
        let host = try #require(compat?["imdsAuthorityHost"] as? String, "status names the compat listener: \(status)")
        return try #require(host.split(separator: ":").last.flatMap { Int($0) })
    }
}
