import Foundation
import Testing

/// Old managed-identity clients, pinned from PyPI in their own venvs (scripts/bootstrap
/// --python): azure-identity 1.6.1 and msrestazure 0.6.4.post1 speak App Service 2017-09-01
/// (`MSI_ENDPOINT` + `MSI_SECRET`); azure-identity 1.8.0 also, and IMDS only when
/// `IDENTITY_ENDPOINT` is not set beside it. Plus the IMDS versions and resources older
/// clients send, with curl.
@Suite("Old managed-identity clients")
struct OldClientTests {
    static let legacyVenv = ".venv-azid16"
    static let venv18 = ".venv-azid18"

    /// msrestazure's MSIAuthentication through whatever its environment points at.
    static func msrestazure(
        _ environment: [String: String], clientId: String? = nil, netns: String? = nil
    ) async throws -> (status: Int32, token: String?, stderr: String) {
        let (executable, prefix) = TestEnvironment.command(TestEnvironment.oldClientPython(legacyVenv), inNetworkNamespace: netns)
        let result = try await runCommand(
            executable, prefix + ["\(TestEnvironment.fixtures)/python/msrestazure_client.py", CompatTests.resource] + (clientId.map { [$0] } ?? []),
            environment: environment)
        let json = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return (result.status, json?["token"] as? String, result.stderr)
    }

    @Test(
        "azure-identity 1.6.1, 1.8.0 and msrestazure get the socket's token through App Service 2017-09-01 (tokenbroker env --protocol app-service-2017)",
        .enabled(
            if: TestEnvironment.hasOldClient(legacyVenv) && TestEnvironment.hasOldClient(venv18),
            "old-client venvs missing: run scripts/bootstrap --python"))
    func appService2017() async throws {
        try await CompatTests.run(identities: { _, provider in
            [
                BrokerDaemon.Identity(
                    name: "storage", tokenFile: provider.endpoints.tokenFile, allow: "[ { uid: 65534 } ]", clientId: CompatTests.userAssignedClientId)
            ]
        }) { scenario, _ in
            let socketToken = try await scenario.broker.request(#"{"op":"token","identity":"default","scope":"\#(CompatTests.scope)"}"#)
            #expect(socketToken.ok)
            let variables = try await CompatTests.brokerEnvironment(scenario, protocols: ["app-service-2017"])
            #expect(Set(variables.keys) == ["MSI_ENDPOINT", "MSI_SECRET"], "\(variables.keys)")
            let environment = CompatTests.sdkEnvironment(variables)

            for venv in [Self.legacyVenv, Self.venv18] {
                let result = try await CompatTests.python("managed", environment: environment, interpreter: TestEnvironment.oldClientPython(venv))
                #expect(result.status == 0, "\(venv): \(result.stderr)")
                #expect(result.token == socketToken.token, "\(venv) got another token")
            }
            // msrestazure takes the 2017 protocol only where it believes it is on App Service.
            let msrest = try await Self.msrestazure(environment.merging(["APPSETTING_WEBSITE_SITE_NAME": "tokenbroker"]) { _, new in new })
            #expect(msrest.status == 0, "msrestazure: \(msrest.stderr)")
            #expect(msrest.token == socketToken.token)
            #expect(try await scenario.provider.stats().byScope[CompatTests.scope] == 1, "all served from the one cached token")

            // The wire: a UTC date in expires_on, `clientid` picks an identity, and each
            // version is told about its own secret header.
            let endpoint = variables["MSI_ENDPOINT"]!, secret = variables["MSI_SECRET"]!
            let legacy = try await CompatTests.curl([
                "-H", "secret: \(secret)", "\(endpoint)?api-version=2017-09-01&resource=\(CompatTests.resource)",
            ])
            #expect(legacy.status == 200)
            #expect(Set(legacy.body.keys) == ["access_token", "expires_on", "resource", "token_type"])
            let expiresOn = legacy.body["expires_on"] as? String ?? ""
            #expect(expiresOn.range(of: #"^\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2} \+00:00$"#, options: .regularExpression) != nil, "\(expiresOn)")
            let named = try await CompatTests.curl([
                "-H", "secret: \(secret)",
                "\(endpoint)?api-version=2017-09-01&resource=\(CompatTests.resource)&clientid=\(CompatTests.userAssignedClientId)",
            ])
            #expect(named.status == 403, "root may not use 'storage': the clientid named it")
            #expect((named.body["message"] as? String)?.contains("may not use identity 'storage'") == true, "\(named.body)")
            let wrongHeader = try await CompatTests.curl([
                "-H", "X-IDENTITY-HEADER: \(secret)", "\(endpoint)?api-version=2017-09-01&resource=\(CompatTests.resource)",
            ])
            #expect(wrongHeader.status == 401 && wrongHeader.body["message"] as? String == "secret is missing or wrong")
            let newWithOld = try await CompatTests.curl([
                "-H", "secret: \(secret)", "\(endpoint)?api-version=2019-08-01&resource=\(CompatTests.resource)",
            ])
            #expect(newWithOld.status == 401 && newWithOld.body["message"] as? String == "X-IDENTITY-HEADER is missing or wrong")
            let unknown = try await CompatTests.curl(["\(endpoint)?api-version=2018-02-01&resource=\(CompatTests.resource)"])
            #expect(
                unknown.status == 400 && (unknown.body["message"] as? String)?.contains("2017-09-01 (MSI_ENDPOINT, secret)") == true,
                "\(unknown.body)")
        }
    }

    @Test(
        "azure-identity 1.8.0 gets the token over IMDS with the IMDS-only set (tokenbroker env --protocol imds)",
        .enabled(if: TestEnvironment.hasOldClient(venv18), "old-client venv .venv-azid18 missing: run scripts/bootstrap --python"))
    func imdsOnlyFor18() async throws {
        try await CompatTests.run { scenario, _ in
            let socketToken = try await scenario.broker.request(#"{"op":"token","scope":"\#(CompatTests.scope)"}"#)
            let variables = try await CompatTests.brokerEnvironment(scenario, protocols: ["imds"])
            #expect(Set(variables.keys) == ["AZURE_POD_IDENTITY_AUTHORITY_HOST"], "\(variables.keys)")
            let result = try await CompatTests.python(
                "managed", environment: CompatTests.sdkEnvironment(variables), interpreter: TestEnvironment.oldClientPython(Self.venv18))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.token == socketToken.token)
        }
    }

    @Test("IMDS accepts the api-versions IMDS serves, refuses others in IMDS's shape, and a .default resource stays one scope")
    func imdsVersionsAndResources() async throws {
        try await CompatTests.run { scenario, _ in
            let variables = try await CompatTests.brokerEnvironment(scenario)
            for version in ["2018-02-01", "2019-08-01", "2021-02-01", "2023-07-01"] {
                let answer = try await CompatTests.curl([
                    "-H", "Metadata: true", CompatTests.imdsURL(variables, "api-version=\(version)&resource=\(CompatTests.resource)"),
                ])
                #expect(answer.status == 200, "api-version \(version): \(answer.body)")
            }
            for query in [
                "api-version=2017-08-01&resource=\(CompatTests.resource)", "api-version=2099-01-01&resource=x", "resource=\(CompatTests.resource)",
            ] {
                let refused = try await CompatTests.curl(["-H", "Metadata: true", CompatTests.imdsURL(variables, query)])
                #expect(refused.status == 400, "\(query)")
                #expect(
                    (refused.body["error"] as? String)?.hasPrefix("Bad request. api-version is invalid or was not specified") == true,
                    "\(refused.body)")
                #expect((refused.body["newest-versions"] as? [String])?.isEmpty == false)
            }
            // Some clients pass a scope where a resource goes: one token, one scope, no `/.default/.default`.
            let asScope = try await CompatTests.curl([
                "-H", "Metadata: true", CompatTests.imdsURL(variables, "api-version=2018-02-01&resource=\(CompatTests.scope)"),
            ])
            #expect(asScope.status == 200)
            let appService = try await CompatTests.curl([
                "-H", "X-IDENTITY-HEADER: \(variables["IDENTITY_HEADER"]!)",
                "\(variables["IDENTITY_ENDPOINT"]!)?api-version=2019-08-01&resource=\(CompatTests.scope)/",
            ])
            #expect(appService.status == 200)
            let socket = try await scenario.broker.request(#"{"op":"token","resource":"\#(CompatTests.scope)"}"#)
            #expect(socket["scope"] as? String == CompatTests.scope)
            let stats = try await scenario.provider.stats()
            #expect(stats.byScope == [CompatTests.scope: 1], "\(stats.byScope)")
        }
    }

    @Test(
        "through tokenbroker relay too: azure-identity 1.6.1 over 2017-09-01, and IMDS's version rules",
        .enabled(if: TestEnvironment.hasOldClient(legacyVenv), "old-client venv .venv-azid16 missing: run scripts/bootstrap --python"))
    func relaySpeaksTheOldProtocols() async throws {
        try await RelayTests.run { scenario, relay in
            let socketToken = try await scenario.broker.request(#"{"op":"token","scope":"\#(CompatTests.scope)"}"#)
            let environment = CompatTests.sdkEnvironment(["MSI_ENDPOINT": "\(relay.url)/msi/token", "MSI_SECRET": RelayTests.secret])
            let old = try await CompatTests.python("managed", environment: environment, interpreter: TestEnvironment.oldClientPython(Self.legacyVenv))
            #expect(old.status == 0, "\(old.stderr)")
            #expect(old.token == socketToken.token)
            let legacy = try await CompatTests.curl([
                "-H", "secret: \(RelayTests.secret)", "\(relay.url)/msi/token?api-version=2017-09-01&resource=\(CompatTests.resource)",
            ])
            #expect(Set(legacy.body.keys) == ["access_token", "expires_on", "resource", "token_type"])
            let newer = try await CompatTests.curl([
                "-H", "Metadata: true", "\(relay.url)/metadata/identity/oauth2/token?api-version=2021-02-01&resource=\(CompatTests.resource)",
            ])
            #expect(newer.status == 200)
            let unknown = try await CompatTests.curl([
                "-H", "Metadata: true", "\(relay.url)/metadata/identity/oauth2/token?api-version=2017-08-01&resource=\(CompatTests.resource)",
            ])
            #expect(unknown.status == 400 && unknown.body["newest-versions"] != nil, "\(unknown.body)")
        }
    }
}
