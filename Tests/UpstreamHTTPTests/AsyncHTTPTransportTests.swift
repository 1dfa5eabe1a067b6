import Foundation
import Logging
import NIOHTTP1
import Synchronization
import Testing
import TokenExchange
import UpstreamHTTP

/// Real TLS against a scripted local server: trust, retries, limits and refusals.
@Suite struct AsyncHTTPTransportTests {
    /// A form body shaped like a real exchange, to check it never leaks into errors.
    static let secretBody = Array("client_assertion=eyJSECRET.ASSERTION.sig&grant_type=client_credentials".utf8)

    /// Runs `body` with a PKI, a server answering from `script`, and a transport; cleans all up.
    private func withServer(
        tls: Bool = true,
        configure: (inout UpstreamHTTPConfiguration, TestPKI) -> Void = { configuration, pki in
            configuration.additionalCAFiles = [pki.caPath]
        },
        script: @escaping @Sendable (Int) -> ScriptedResponse = { _ in ScriptedResponse() },
        _ body: (AsyncHTTPTransport, ScriptedHTTPServer) async throws -> Void
    ) async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let server = try await ScriptedHTTPServer(tls: tls ? (pki.leafPath, pki.leafKeyPath) : nil, script: script)
        // Generous connect (and TLS handshake) time: a loaded two-core CI machine must not
        // turn a handshake into a "transport failure" the test did not script.
        var configuration = UpstreamHTTPConfiguration(connectTimeout: .seconds(30), retryBaseDelay: .milliseconds(20))
        configure(&configuration, pki)
        let transport = try AsyncHTTPTransport(configuration: configuration, logger: quietLogger)
        do {
            try await body(transport, server)
        } catch {
            try? await transport.shutdown()
            try? await server.stop()
            throw error
        }
        try await transport.shutdown()
        try await server.stop()
    }

    private func post(_ server: ScriptedHTTPServer, scheme: String = "https", path: String = "/tenant/oauth2/v2.0/token") -> UpstreamRequest {
        post(port: server.port, scheme: scheme, path: path)
    }

    private func post(port: Int, scheme: String = "https", path: String = "/tenant/oauth2/v2.0/token") -> UpstreamRequest {
        UpstreamRequest(
            method: "POST",
            url: "\(scheme)://127.0.0.1:\(port)\(path)",
            headers: [HeaderField("Content-Type", "application/x-www-form-urlencoded")],
            body: Self.secretBody
        )
    }

    @Test func trustsAServerSignedByTheConfiguredCA() async throws {
        try await withServer { transport, server in
            let response = try await transport.send(post(server))
            #expect(response.status == 200)
            #expect(response.body == Array(#"{"ok":true}"#.utf8))
            let seen = try #require(server.requests.first)
            #expect(seen.head.method == .POST)
            #expect(seen.head.uri == "/tenant/oauth2/v2.0/token")
            #expect(seen.head.headers["User-Agent"] == ["tokenbroker/0.1"])
            #expect(seen.body == Self.secretBody)
        }
    }

    /// Fails with the TLS reason, not after retrying until a timeout (no timing assertion:
    /// a timeout would show as a different message).
    @Test func failsFastWhenTheServerIsNotTrusted() async throws {
        try await withServer(configure: { configuration, pki in
            configuration.additionalCAFiles = [pki.otherCAPath]  // a CA, but not the server's
        }) { transport, server in
            let error = await #expect(throws: TokenExchangeError.self) { try await transport.send(post(server)) }
            #expect(error?.code == .upstreamUnavailable)
            #expect(error?.message.contains("TLS certificate verify failed for 127.0.0.1:\(server.port)") == true, "\(String(describing: error))")
            #expect(server.requests.isEmpty)
        }
    }

    @Test func rejectsAMissingCAFileAtConstruction() throws {
        let missing = "/nonexistent/\(UUID().uuidString)/ca.pem"
        let error = #expect(throws: UpstreamHTTPError.self) {
            _ = try AsyncHTTPTransport(configuration: .init(additionalCAFiles: [missing]), logger: quietLogger)
        }
        #expect(error?.code == .caFileUnreadable)
        #expect(error?.message == "CA file \(missing) does not exist")
    }

    @Test func rejectsACAFileWithoutCertificates() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let error = #expect(throws: UpstreamHTTPError.self) {
            _ = try AsyncHTTPTransport(configuration: .init(additionalCAFiles: [pki.leafKeyPath]), logger: quietLogger)
        }
        #expect(error?.code == .caFileInvalid)
        #expect(error?.message.contains(pki.leafKeyPath) == true)
    }

    @Test func retriesServerErrorsThenSucceeds() async throws {
        try await withServer(script: { n in ScriptedResponse(status: n < 3 ? 503 : 200) }) { transport, server in
            let response = try await transport.send(post(server))
            #expect(response.status == 200)
            #expect(server.requests.count == 3)
        }
    }

    @Test func returnsTheLastServerErrorWhenRetriesRunOut() async throws {
        try await withServer(script: { _ in ScriptedResponse(status: 500, body: Array("oops".utf8)) }) { transport, server in
            let response = try await transport.send(post(server))
            #expect(response.status == 500)
            #expect(server.requests.count == 3)  // 1 + 2 retries
        }
    }

    @Test func returnsALongRetryAfterAtOnce() async throws {
        try await withServer(script: { _ in ScriptedResponse(status: 503, headers: [("Retry-After", "30")]) }) { transport, server in
            let response = try await transport.send(post(server))
            #expect(response.status == 503)
            #expect(response.header("retry-after") == "30")
            #expect(server.requests.count == 1)
        }
    }

    @Test(arguments: [400, 401, 404, 429])
    func neverRetriesClientErrors(status: Int) async throws {
        try await withServer(script: { _ in ScriptedResponse(status: status, headers: [("Retry-After", "1")]) }) { transport, server in
            let response = try await transport.send(post(server))
            #expect(response.status == status)
            #expect(server.requests.count == 1)
        }
    }

    @Test func refusesPlainHTTPBeforeSending() async throws {
        try await withServer(tls: false) { transport, server in
            let error = await #expect(throws: TokenExchangeError.self) { try await transport.send(post(server, scheme: "http")) }
            #expect(error?.message.contains("plain http") == true)
            #expect(error?.isRetryable == false)
            #expect(server.requests.isEmpty)
        }
    }

    @Test func allowsPlainHTTPToLoopbackOnlyWhenEnabled() async throws {
        try await withServer(
            tls: false,
            configure: { configuration, _ in
                configuration.allowInsecureHTTPForLoopback = true
            }
        ) { transport, server in
            let response = try await transport.send(post(server, scheme: "http"))
            #expect(response.status == 200)
            let remote = UpstreamRequest(method: "POST", url: "http://login.example.com/token", headers: [], body: [])
            await #expect(throws: TokenExchangeError.self) { try await transport.send(remote) }
        }
    }

    @Test(arguments: [false, true])
    func refusesAnOversizedResponse(chunked: Bool) async throws {
        let big = [UInt8](repeating: UInt8(ascii: "x"), count: 2 * 1024 * 1024)
        try await withServer(script: { _ in ScriptedResponse(body: big, chunked: chunked) }) { transport, server in
            let error = await #expect(throws: TokenExchangeError.self) { try await transport.send(post(server)) }
            #expect(error?.message.contains("response larger than 1 MiB from 127.0.0.1:\(server.port)") == true, "\(String(describing: error))")
            #expect(server.requests.count == 1)
        }
    }

    @Test func timesOutASilentServer() async throws {
        try await withServer(
            configure: { configuration, pki in
                configuration.additionalCAFiles = [pki.caPath]
                configuration.requestTimeout = .seconds(1)
            }, script: { _ in ScriptedResponse(hang: true) }
        ) { transport, server in
            let error = await #expect(throws: TokenExchangeError.self) { try await transport.send(post(server)) }
            #expect(error?.message.contains("timeout after 1 s waiting for 127.0.0.1:\(server.port)") == true, "\(String(describing: error))")
            #expect(server.requests.count <= 1)  // a spent timeout is not retried (on a loaded machine the request may not even arrive)
        }
    }

    @Test func reportsConnectionRefusedWithoutTheBody() async throws {
        // A port bound but not listening, held for the whole test: connecting is refused, and
        // no other test can start a server on it meanwhile (a port merely found free can be).
        let held = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(held) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(held, $0, length) == 0 && getsockname(held, $0, &length) == 0 }
        }
        try #require(bound, "bind: \(errno)")
        let port = Int(UInt16(bigEndian: address.sin_port))
        let transport = try AsyncHTTPTransport(configuration: .init(retryBaseDelay: .milliseconds(10)), logger: quietLogger)
        let error = await #expect(throws: TokenExchangeError.self) { try await transport.send(post(port: port)) }
        try await transport.shutdown()
        #expect(error?.message == "token service unreachable: connect refused to 127.0.0.1:\(port)")
        #expect(error?.description.contains("SECRET") == false)
    }
}

/// The app-facing helper that turns the environment into trust settings.
@Suite struct UpstreamHTTPConfigurationTests {
    @Test func addsSSLCertFileAndTheConfiguredCAFile() {
        let configuration = UpstreamHTTPConfiguration.configuration(
            environment: ["SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "HOME": "/root"],
            caFile: "/etc/tokenbroker/ca.pem"
        )
        #expect(configuration.additionalCAFiles == ["/etc/ssl/certs/ca-certificates.crt", "/etc/tokenbroker/ca.pem"])
        #expect(configuration.connectTimeout == .seconds(5))
        #expect(configuration.requestTimeout == .seconds(15))
        #expect(configuration.maxResponseBytes == 1024 * 1024)
        #expect(configuration.retries == 2)
        #expect(configuration.userAgent == "tokenbroker/0.1")
        #expect(configuration.allowInsecureHTTPForLoopback == false)
    }

    @Test func ignoresEmptyAndDuplicateFiles() {
        let configuration = UpstreamHTTPConfiguration.configuration(environment: ["SSL_CERT_FILE": ""], caFile: nil)
        #expect(configuration.additionalCAFiles.isEmpty)
        let same = UpstreamHTTPConfiguration.configuration(environment: ["SSL_CERT_FILE": "/a.pem"], caFile: "/a.pem")
        #expect(same.additionalCAFiles == ["/a.pem"])
    }

    @Test func loadsTheSystemBundleNamedBySSLCertFile() async throws {
        let bundle = "/etc/ssl/certs/ca-certificates.crt"
        try #require(FileManager.default.fileExists(atPath: bundle))
        let transport = try AsyncHTTPTransport(
            configuration: .configuration(environment: ["SSL_CERT_FILE": bundle], caFile: nil),
            logger: quietLogger
        )
        try await transport.shutdown()
    }

    @Test func rejectsOutOfRangeValues() {
        let error = #expect(throws: UpstreamHTTPError.self) {
            _ = try AsyncHTTPTransport(configuration: .init(retries: -1), logger: quietLogger)
        }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains("retries") == true)
    }
}
