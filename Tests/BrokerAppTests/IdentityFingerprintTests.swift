import TestRandom
import Testing
import TokenExchange

@testable import BrokerApp

/// Which changes to an identity keep its restored tokens (docs/operations.md, warm restarts).
@Suite struct IdentityFingerprintTests {
    static func identity(
        tenant: String = "t", client: String = "c", authority: String = EntraConfiguration.publicCloudAuthorityHost, file: String = "/var/run/token",
        allow: [AllowRule] = [], prefetch: [Scope] = []
    ) throws -> IdentityConfiguration {
        IdentityConfiguration(
            name: "default", source: .file(path: file),
            exchange: .entra(try EntraConfiguration(tenantId: tenant, clientId: client, authorityHost: authority)), allow: allow, prefetch: prefetch)
    }

    @Test func tenantClientAuthorityAndSourceChangeIt() throws {
        let base = IdentityFingerprint.of(try Self.identity())
        #expect(base.count == 32)
        #expect(IdentityFingerprint.of(try Self.identity()) == base, "stable")
        for changed in [
            try Self.identity(tenant: "other"), try Self.identity(client: "other"), try Self.identity(authority: "https://login.microsoftonline.us"),
            try Self.identity(file: "/var/run/other"),
        ] {
            #expect(IdentityFingerprint.of(changed) != base, "\(changed)")
        }
        var renamed = try Self.identity()
        renamed.name = "renamed"
        #expect(IdentityFingerprint.of(renamed) != base)
        var aws = try Self.identity()
        aws.exchange = .none
        #expect(IdentityFingerprint.of(aws) != base, "the exchange kind counts")
    }

    @Test func allowRulesAndPrefetchDoNot() throws {
        let base = IdentityFingerprint.of(try Self.identity())
        #expect(IdentityFingerprint.of(try Self.identity(allow: [.uid(1000)], prefetch: [Scope("https://vault.azure.net/.default")])) == base)
    }

    @Test func execEnvironmentOrderDoesNot() {
        let environment = Dictionary(uniqueKeysWithValues: (0..<20).map { ("KEY\($0)", "v\($0)") })
        let a = IdentityConfiguration(
            name: "p", source: .exec(ExecSettings(command: ["/bin/x"], environment: environment), audience: nil), exchange: .none)
        var shuffled: [String: String] = [:]
        var random = SeededRandom()
        for (key, value) in environment.shuffled(using: &random) { shuffled[key] = value }
        let b = IdentityConfiguration(
            name: "p", source: .exec(ExecSettings(command: ["/bin/x"], environment: shuffled), audience: nil), exchange: .none)
        #expect(IdentityFingerprint.of(a) == IdentityFingerprint.of(b), "\(random)")
    }
}
