import BrokerServer
import Foundation
import Testing

@testable import BrokerApp

private let identityYAML = """
    identities:
      - name: storage
        source: { file: /var/run/secrets/azure/tokens/azure-identity-token }
        exchange: { entra: { tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47, clientId: 0f8c3e1a-5b7d-4a2e-9c61-3d2b1e4f5a6b } }
        aliases: { objectId: 0b1ec700-0000-4000-8000-000000000001, resourceId: /subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/storage }
    """

@Suite("compat: configuration")
struct CompatConfigurationTests {
    @Test("listeners, secret file, path, default identity and aliases are read")
    func fullSection() throws {
        let configuration = try ConfigurationLoader.load(
            yaml: """
                compat:
                  tcp: "127.0.0.1:8181"
                  unix: /run/tokenbroker/compat.sock
                  identityHeaderFile: /var/lib/tokenbroker/header
                  appServicePath: /MSI/token
                  defaultIdentity: storage
                \(identityYAML)
                """, origin: "test", environment: [:])
        #expect(configuration.compat.tcp == TCPAddress(host: "127.0.0.1", port: 8181))
        #expect(configuration.compat.unixSocket == "/run/tokenbroker/compat.sock")
        #expect(configuration.compat.identityHeaderFile == "/var/lib/tokenbroker/header")
        #expect(configuration.compat.appServicePath == "/MSI/token")
        #expect(configuration.compat.defaultIdentity == "storage")
        #expect(configuration.identities[0].aliases.objectId == "0b1ec700-0000-4000-8000-000000000001")
        #expect(configuration.identities[0].aliases.resourceId?.hasSuffix("/storage") == true)
    }

    @Test("off by default")
    func offByDefault() throws {
        #expect(try ConfigurationLoader.load(yaml: identityYAML, origin: "test", environment: [:]).compat.isEnabled == false)
    }

    @Test(
        "only loopback addresses (and the IMDS address, bindable only where it is local) are accepted",
        arguments: ["127.0.0.1:80", "127.3.4.5:0", "[::1]:8181", "169.254.169.254:80"])
    func loopback(_ text: String) {
        #expect(ConfigurationLoader.loopbackAddress(text) != nil)
    }

    @Test(
        "anything reachable from elsewhere, or not an address, is refused",
        arguments: [
            "0.0.0.0:8181", "10.0.0.1:80", "[::]:80", "localhost:80", "127.0.0.1", "127.0.0.1:70000", "[::1]8181", "169.254.169.253:80",
            "169.254.170.2:80",
        ])
    func notLoopback(_ text: String) {
        #expect(ConfigurationLoader.loopbackAddress(text) == nil)
    }

    @Test("every problem is named with its field path")
    func problems() {
        do {
            _ = try ConfigurationLoader.load(
                yaml: """
                    compat:
                      tcp: "0.0.0.0:8181"
                      unix: relative.sock
                      appServicePath: /metadata/identity/oauth2/token
                      defaultIdentity: missing
                      colour: blue
                    \(identityYAML)
                    """, origin: "test", environment: [:])
            Issue.record("loaded")
        } catch {
            #expect(error.issues.map(\.path) == ["compat.tcp", "compat.unix", "compat.appServicePath", "compat.defaultIdentity", "compat.colour"])
            #expect(error.issues[0].message.contains("loopback"))
            #expect(error.issues[3].message == "no identity named 'missing'")
        }
    }
}

@Suite("compat: identity header secret")
struct IdentityHeaderSecretTests {
    @Test("created once with 256 random bits and mode 0600, then read back unchanged")
    func createdThenReused() throws {
        let directory = NSTemporaryDirectory() + "tb-secret-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/identity-header"
        let first = try IdentityHeaderSecret.loadOrCreate(path)
        #expect(first.count == 64 && first.allSatisfy(\.isHexDigit))
        let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue
        #expect(mode == 0o600)
        #expect(try IdentityHeaderSecret.loadOrCreate(path) == first)
    }

    @Test("a file with something that cannot be a header value is refused, naming the file")
    func garbageRefused() throws {
        let path = NSTemporaryDirectory() + "tb-secret-\(UUID().uuidString)"
        try "short\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: ConfigurationError.self) { try IdentityHeaderSecret.loadOrCreate(path) }
        do { _ = try IdentityHeaderSecret.loadOrCreate(path) } catch { #expect("\(error)".contains(path)) }
    }

    @Test("the header comparison needs every byte and the length")
    func comparison() {
        let secret = Array("0123456789abcdef".utf8)
        #expect(CompatEndpoints.constantTimeEqual(secret, secret))
        #expect(!CompatEndpoints.constantTimeEqual(Array("0123456789abcdeF".utf8), secret))
        #expect(!CompatEndpoints.constantTimeEqual(Array("0123456789abcde".utf8), secret))
        #expect(!CompatEndpoints.constantTimeEqual(Array("0123456789abcdef0".utf8), secret))
        #expect(!CompatEndpoints.constantTimeEqual([], []))
    }
}
