import Foundation
import Testing

/// Exec plugins run by the daemon (Tests/Fixtures/plugins): a good source and a
/// good exchange serve tokens; misbehaving plugins each give their own error while
/// every other identity keeps being served.
@Suite("Exec plugins in the daemon")
struct PluginTests {
    static let plugins = "\(TestEnvironment.packageRoot)/Tests/Fixtures/plugins"
    static let scope = "https://storage.azure.com/.default"

    static func execSource(_ script: String, env: [String: String] = [:], timeout: Int = 2) -> String {
        let environment = env.map { "\($0.key): \"\($0.value)\"" }.joined(separator: ", ")
        return
            "{ exec: { command: [\(plugins)/\(script)], timeoutSeconds: \(timeout), audience: api://AzureADTokenExchange, env: { \(environment) } } }"
    }

    @Test("an exec source's JWT is exchanged at Entra; an exec exchange's token is served; broken plugins fail alone")
    func pluginsInTheDaemon() async throws {
        try await Scenario.run(identities: { directory, provider in
            let minted = try await provider.mint()
            return [
                BrokerDaemon.Identity(
                    name: "from-plugin", tokenFile: "", sourceYAML: Self.execSource("assertion-good.sh", env: ["PLUGIN_TOKEN": minted])),
                BrokerDaemon.Identity(
                    name: "plugin-exchange", tokenFile: provider.endpoints.tokenFile,
                    exchangeYAML: "{ exec: { command: [\(Self.plugins)/exchange-good.sh], env: { PLUGIN_TOKEN: opaque-token-42 } } }"),
                BrokerDaemon.Identity(
                    name: "hangs", tokenFile: "", sourceYAML: Self.execSource("hang.sh", env: ["PID_FILE": "\(directory)/hang.pid"], timeout: 1)),
                BrokerDaemon.Identity(name: "garbage", tokenFile: "", sourceYAML: Self.execSource("garbage.sh")),
                BrokerDaemon.Identity(
                    name: "floods", tokenFile: "", sourceYAML: Self.execSource("flood.sh", env: ["PID_FILE": "\(directory)/flood.pid"])),
                BrokerDaemon.Identity(
                    name: "fails", tokenFile: "", sourceYAML: Self.execSource("fail.sh", env: ["PID_FILE": "\(directory)/fail.pid"])),
            ]
        }) { scenario in
            let viaSource = try await scenario.broker.request(#"{"op":"token","identity":"from-plugin","scope":"\#(Self.scope)"}"#)
            #expect(viaSource.ok, "\(viaSource)")
            #expect(try await scenario.provider.stats().requests.last?.assertionSubject != nil, "the plugin's JWT reached the dev Entra")

            let viaExchange = try await scenario.broker.request(#"{"op":"token","identity":"plugin-exchange","scope":"\#(Self.scope)"}"#)
            #expect(viaExchange.token == "opaque-token-42", "\(viaExchange)")

            for (identity, expected) in [
                ("hangs", "did not answer within"), ("garbage", "not"), ("floods", "more than"), ("fails", "exit"),
            ] {
                let reply = try await scenario.broker.request(#"{"op":"token","identity":"\#(identity)","scope":"\#(Self.scope)"}"#)
                #expect(reply.errorCode == "assertion_unavailable", "\(identity): \(reply)")
                #expect(reply.errorMessage.contains(expected), "\(identity): \(reply.errorMessage)")
                #expect(!reply.errorMessage.contains("eyJzdWIiOiJzZWNyZXQifQ"), "a JWT from the plugin's stderr reached the caller")
                // Everyone else is still served, from the cache or afresh.
                #expect(try await scenario.broker.request(#"{"op":"token","identity":"default","scope":"\#(Self.scope)"}"#).ok)
            }
            #expect(!scenario.broker.process.stderr.contains("eyJzdWIiOiJzZWNyZXQifQ"), "a JWT from the plugin's stderr reached the log")
        }
    }
}
