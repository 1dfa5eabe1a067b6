import AsyncHTTPClient
import DevIdentityProvider
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Testing

/// A started provider in a fresh temp directory and an HTTPS client that trusts its CA.
struct ProviderFixture {
    let provider: DevIdentityProvider
    let endpoints: DevProviderEndpoints
    let client: HTTPClient
    let directory: String

    /// Runs `body` against a freshly started provider and always tears everything down.
    static func with<T>(
        configure: (inout DevIdentityProviderConfiguration) -> Void = { _ in },
        _ body: (ProviderFixture) async throws -> T
    ) async throws -> T {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = DevIdentityProviderConfiguration(stateDirectory: directory + "/state")
        configure(&configuration)
        var logger = Logger(label: "test.dev-provider")
        // The provider logs every request at info; keep test output to what goes wrong.
        logger.logLevel = .notice
        let provider = DevIdentityProvider(configuration: configuration, logger: logger)
        let endpoints: DevProviderEndpoints
        do {
            endpoints = try await provider.start()
        } catch {
            try? await provider.shutdown()
            throw error
        }
        let client: HTTPClient
        do {
            client = try makeClient(trusting: endpoints.caFile)
        } catch {
            try? await provider.shutdown()
            throw error
        }
        let fixture = ProviderFixture(provider: provider, endpoints: endpoints, client: client, directory: directory)
        do {
            let result = try await body(fixture)
            try await client.shutdown()
            try await provider.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            try? await provider.shutdown()
            throw error
        }
    }

    static func makeClient(trusting caFile: String?) throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile {
            tls.additionalTrustRoots.append(.certificates(try NIOSSLCertificate.fromPEMFile(caFile)))
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        // Fail a bad TLS handshake at once instead of retrying until the connect timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
    }

    static func makeTemporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("dev-provider-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    // MARK: - HTTP helpers

    struct Reply {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: [UInt8]

        var text: String { String(decoding: body, as: UTF8.self) }
        var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
        }
        var errorCodes: [Int] { (json["error_codes"] as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue } ?? [] }
    }

    func send(_ method: HTTPMethod, _ url: String, body: [UInt8]? = nil, contentType: String? = nil) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        let response = try await client.execute(request, timeout: .seconds(30))
        let collected = try await response.body.collect(upTo: 1 << 20)
        return Reply(status: response.status, headers: response.headers, body: Array(buffer: collected))
    }

    func postJSON(_ url: String, _ object: [String: Any]) async throws -> Reply {
        let body = try JSONSerialization.data(withJSONObject: object)
        return try await send(.POST, url, body: Array(body), contentType: "application/json")
    }

    /// A token request exactly as azure-identity's WorkloadIdentityCredential sends it.
    func requestToken(
        assertion: String, scope: String? = "https://storage.azure.com/.default",
        clientId: String? = nil, tenant: String? = nil,
        assertionType: String = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    ) async throws -> Reply {
        var fields: [(String, String)] = [("client_id", clientId ?? endpoints.clientId)]
        if let scope { fields.append(("scope", scope)) }
        fields += [
            ("client_assertion_type", assertionType), ("client_assertion", assertion),
            ("grant_type", "client_credentials"),
        ]
        let url = "\(endpoints.authorityHost)/\(tenant ?? endpoints.tenantId)/oauth2/v2.0/token"
        return try await send(.POST, url, body: Array(Self.formEncode(fields).utf8), contentType: "application/x-www-form-urlencoded")
    }

    /// A token signed by the issuer with overrides (see `POST /_dev/mint`).
    func mint(_ overrides: [String: Any] = [:]) async throws -> String {
        let reply = try await postJSON(endpoints.issuerURL + "/_dev/mint", overrides)
        #expect(reply.status == .ok, "mint failed: \(reply.text)")
        return try #require(reply.json["token"] as? String)
    }

    func currentTokenFile() throws -> String {
        try String(contentsOfFile: endpoints.tokenFile, encoding: .utf8)
    }

    func stats() async throws -> [String: Any] {
        try await send(.GET, endpoints.authorityHost + "/_dev/stats").json
    }

    static func formEncode(_ fields: [(String, String)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return fields.map { name, value in
            "\(name)=\(value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value)"
        }.joined(separator: "&")
    }
}

/// A JWT's payload JSON text, not verified.
func jwtPayloadText(_ token: String) -> String {
    let parts = token.split(separator: ".")
    guard parts.count == 3 else { return "" }
    var base64 = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    while base64.count % 4 != 0 { base64 += "=" }
    return Data(base64Encoded: base64).map { String(decoding: $0, as: UTF8.self) } ?? ""
}

/// Decodes a JWT's payload without verifying it.
func jwtPayload(_ token: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(jwtPayloadText(token).utf8))) as? [String: Any] ?? [:]
}

/// Decodes a JWT's header without verifying it.
func jwtHeader(_ token: String) -> [String: Any] {
    jwtPayload("x." + (token.split(separator: ".").first.map(String.init) ?? "") + ".x")
}

/// A logger that drops everything, for tests that exercise failures on purpose.
let quietLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
