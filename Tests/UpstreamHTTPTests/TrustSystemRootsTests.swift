import Foundation
import Testing
import TokenExchange
import UpstreamHTTP

/// `trustSystemRoots: false` (dev mode) trusts the configured CA files alone: the system
/// bundle is never parsed, and `SSL_CERT_FILE`, which extends the system's trust, is ignored.
@Suite struct TrustSystemRootsTests {
    @Test func theConfiguredCAAloneIsTrusted() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        var base = UpstreamHTTPConfiguration(connectTimeout: .seconds(30), retries: 0)
        base.trustSystemRoots = false
        let configuration = UpstreamHTTPConfiguration.configuration(environment: [:], caFile: pki.caPath, base: base)
        #expect(configuration.additionalCAFiles == [pki.caPath])
        #expect(try await status(pki, configuration) == 200)
    }

    @Test func sslCertFileCountsOnlyWithTheSystemRoots() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        // SSL_CERT_FILE names the server's CA; the configuration file names another one.
        let environment = ["SSL_CERT_FILE": pki.caPath]
        var base = UpstreamHTTPConfiguration(connectTimeout: .seconds(30), retries: 0)
        #expect(try await status(pki, .configuration(environment: environment, caFile: pki.otherCAPath, base: base)) == 200)

        base.trustSystemRoots = false
        let alone = UpstreamHTTPConfiguration.configuration(environment: environment, caFile: pki.otherCAPath, base: base)
        #expect(alone.additionalCAFiles == [pki.otherCAPath])
        let error = await #expect(throws: TokenExchangeError.self) { try await status(pki, alone) }
        #expect(error?.message.contains("TLS certificate verify failed") == true, "\(String(describing: error))")
    }

    /// The status of one POST to a TLS server presenting the PKI's leaf.
    private func status(_ pki: TestPKI, _ configuration: UpstreamHTTPConfiguration) async throws -> Int {
        let server = try await ScriptedHTTPServer(tls: (pki.leafPath, pki.leafKeyPath)) { _ in ScriptedResponse() }
        let transport = try AsyncHTTPTransport(configuration: configuration, logger: quietLogger)
        let request = UpstreamRequest(
            method: "POST", url: "https://127.0.0.1:\(server.port)/token",
            headers: [HeaderField("Content-Type", "application/x-www-form-urlencoded")], body: Array("a=b".utf8))
        do {
            let response = try await transport.send(request)
            try await transport.shutdown()
            try await server.stop()
            return response.status
        } catch {
            try? await transport.shutdown()
            try? await server.stop()
            throw error
        }
    }
}
