import Foundation
import Testing

/// The compatibility listeners answer only requests addressed to a loopback host in
/// origin form: a page that rebinds its DNS name to 127.0.0.1 still sends its own name
/// in `Host`, and nothing here is a proxy.
@Suite("Compatibility endpoints: Host and request target")
struct CompatHostTests {
    @Test("a foreign Host, a missing Host or an absolute-form target is refused; loopback hosts are served")
    func loopbackHostsOnly() async throws {
        try await CompatTests.run { scenario, compatSocket in
            let variables = try await CompatTests.brokerEnvironment(scenario)
            let base = try #require(variables["AZURE_POD_IDENTITY_AUTHORITY_HOST"])
            let port = try #require(base.split(separator: ":").last.map(String.init))
            let url = CompatTests.imdsURL(variables)
            let target = String(url.dropFirst(base.count))

            for host in ["evil.example", "evil.example:\(port)", "127.0.0.1.evil.example", "", "[::ffff:10.0.0.1]:\(port)", "[::2]"] {
                let refused = try await CompatTests.curl(["-H", "Metadata: true", "-H", "Host: \(host)", url])
                #expect(refused.status == 400 && refused.body["access_token"] == nil, "Host '\(host)': \(refused)")
            }
            let absolute = try await CompatTests.curl(["-H", "Metadata: true", "--request-target", "http://evil.example\(target)", url])
            #expect(absolute.status == 400 && absolute.body["access_token"] == nil, "absolute form: \(absolute)")

            for host in ["127.0.0.1:\(port)", "localhost:\(port)", "LOCALHOST", "[::1]:\(port)", "127.0.0.2", "[::ffff:127.0.0.1]:\(port)"] {
                let served = try await CompatTests.curl(["-H", "Metadata: true", "-H", "Host: \(host)", url])
                #expect(served.status == 200 && served.body["access_token"] != nil, "Host '\(host)': \(served)")
            }
            let unix = try await CompatTests.curl(["--unix-socket", compatSocket, "-H", "Metadata: true", "http://localhost\(target)"])
            #expect(unix.status == 200, "the compat Unix socket with curl's Host: localhost")
            // The broker's own socket answers whatever Host says (curl, proxies).
            let own = try await runCommand(
                "/usr/bin/curl",
                [
                    "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", scenario.broker.socketPath, "-H", "Host: anything.example",
                    "http://x/healthz",
                ])
            #expect(own.stdout == "200")
        }
    }
}

/// Compatibility settings a reload applies.
@Suite("Compatibility endpoints: reload")
struct CompatReloadTests {
    @Test("compat.defaultIdentity applies at once")
    func defaultIdentityIsLive() async throws {
        try await CompatTests.run(identities: { _, provider in [.init(name: "second", tokenFile: provider.endpoints.tokenFile)] }) { scenario, _ in
            let variables = try await CompatTests.brokerEnvironment(scenario, identity: "default")
            let url = CompatTests.imdsURL(variables)
            let before = try await CompatTests.curl(["-H", "Metadata: true", url])
            #expect(before.status == 400, "two identities and no default: the SDK must name one: \(before)")

            let path = scenario.broker.configPath
            let yaml = try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(
                of: "compat: { ", with: "compat: { defaultIdentity: second, ")
            try yaml.write(toFile: path, atomically: true, encoding: .utf8)
            scenario.broker.process.signal(SIGHUP)
            try await waitUntil(timeout: .seconds(30), "the reload") { scenario.broker.process.stderr.contains("configuration reloaded") }
            #expect(!scenario.broker.process.stderr.split(separator: "\n").contains { $0.contains("next restart") }, "not left for a restart")
            let after = try await CompatTests.curl(["-H", "Metadata: true", url])
            #expect(after.status == 200 && after.body["access_token"] != nil, "\(after)")
        }
    }
}
