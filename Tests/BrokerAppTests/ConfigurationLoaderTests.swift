import BrokerApp
import Foundation
import Testing
import TokenExchange

private let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
private let client = "0f8c3e1a-5b7d-4a2e-9c61-3d2b1e4f5a6b"

private func load(_ yaml: String, environment: [String: String] = [:]) throws(ConfigurationError) -> BrokerConfiguration {
    try ConfigurationLoader.load(yaml: yaml, origin: "/etc/tokenbroker/config.yaml", environment: environment)
}

/// The issues of a configuration that must not load.
private func issues(_ yaml: String, environment: [String: String] = [:]) -> [ConfigurationError.Issue] {
    do {
        _ = try load(yaml, environment: environment)
        Issue.record("the configuration loaded but should not have")
        return []
    } catch {
        return error.issues
    }
}

@Suite struct FullConfiguration {
    static let yaml = """
        socket:
          path: /run/tokenbroker/broker.sock
          mode: "0640"
          group: root
        limits:
          maxConnections: 256
          idleTimeoutSeconds: 30
          eventLoopThreads: 2
        cache:
          maxScopesPerIdentity: 16
          maxConcurrentExchanges: 4
          minValiditySeconds: 120
        upstream:
          caFile: /etc/ssl/certs/ca-certificates.crt
          timeoutSeconds: 20
        log:
          level: debug
        identities:
          - name: storage-writer
            source: { file: /var/run/secrets/azure/tokens/azure-identity-token }
            exchange:
              entra:
                tenantId: \(tenant)
                clientId: \(client)
                authorityHost: https://login.microsoftonline.com/
            allow:
              - { uid: 1000 }
              - { gid: 1001 }
              - { user: root }
              - { group: root }
            prefetch:
              - https://storage.azure.com/.default
              - https://vault.azure.net/.default
          - name: shared.reader_2
            source: { file: /var/run/secrets/tokens/reader }
            exchange: { entra: { tenantId: contoso.onmicrosoft.com, clientId: reader-app, authorityHost: "https://login.microsoftonline.us" } }
            allow: [ { any: true } ]
        """

    @Test func everySectionIsRead() throws {
        let configuration = try load(Self.yaml)
        #expect(configuration.socket.path == "/run/tokenbroker/broker.sock")
        #expect(configuration.socket.mode == 0o640)
        #expect(configuration.socket.group == "root")
        #expect(configuration.limits.maxConnections == 256)
        #expect(configuration.limits.idleTimeoutSeconds == 30)
        #expect(configuration.limits.eventLoopThreads == 2)
        #expect(configuration.cache.maxScopesPerIdentity == 16)
        #expect(configuration.cache.maxConcurrentExchanges == 4)
        #expect(configuration.cache.minValiditySeconds == 120)
        #expect(configuration.upstream.caFile == "/etc/ssl/certs/ca-certificates.crt")
        #expect(configuration.upstream.timeoutSeconds == 20)
        #expect(configuration.log.level == "debug")
    }

    @Test func identitiesAreReadInFileOrder() throws {
        let identities = try load(Self.yaml).identities
        #expect(identities.map(\.name) == ["storage-writer", "shared.reader_2"])
        let writer = identities[0]
        #expect(writer.source == .file(path: "/var/run/secrets/azure/tokens/azure-identity-token"))
        #expect(writer.exchange == .entra(try EntraConfiguration(tenantId: tenant, clientId: client)))
        #expect(writer.allow == [.uid(1000), .gid(1001), .uid(0), .gid(0)])
        #expect(writer.prefetch == [Scope("https://storage.azure.com/.default"), Scope("https://vault.azure.net/.default")])
        let reader = identities[1]
        #expect(
            reader.exchange
                == .entra(
                    try EntraConfiguration(
                        tenantId: "contoso.onmicrosoft.com", clientId: "reader-app", authorityHost: "https://login.microsoftonline.us")))
        #expect(reader.allow == [.any])
        #expect(reader.prefetch.isEmpty)
    }

    @Test(arguments: ["", "# only a comment\n", "\n\n"])
    func emptyFileMeansDefaults(yaml: String) throws {
        #expect(try load(yaml) == BrokerConfiguration())
    }

    /// A YAML null (an empty document, a section whose entries are all commented
    /// out) means "not set", as it does for every YAML consumer.
    @Test(arguments: ["---\n", "identities:\n  # - name: storage-writer\n", "socket:\nlog: ~\n"])
    func nullMeansNotSet(yaml: String) throws {
        #expect(try load(yaml) == BrokerConfiguration())
    }

    @Test func defaultsAreDocumentedValues() {
        let configuration = BrokerConfiguration()
        #expect(configuration.socket.path == "/run/tokenbroker/broker.sock")
        #expect(configuration.socket.mode == 0o660)
        #expect(configuration.limits.maxConnections == 1024)
        #expect(configuration.cache.minValiditySeconds == 300)
        #expect(configuration.log.level == "info")
    }

    @Test(arguments: [("\"0660\"", 0o660), ("0600", 0o600), ("\"660\"", 0o660), ("\"0777\"", 0o777)] as [(String, UInt32)])
    func modeIsOctal(text: String, mode: UInt32) throws {
        #expect(try load("socket: { mode: \(text) }").socket.mode == mode)
    }

    @Test func loadsFromAFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tb-config-\(UUID().uuidString).yaml").path
        try Data(Self.yaml.utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try ConfigurationLoader.load(path: path, environment: [:]).identities.count == 2)
    }

    @Test func missingFileIsReportedWithItsPath() {
        let error = #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(path: "/nonexistent/tb/config.yaml", environment: [:]) }
        #expect(error?.origin == "/nonexistent/tb/config.yaml")
        #expect(error?.issues.first?.message == "cannot read /nonexistent/tb/config.yaml: No such file or directory")
    }
}

@Suite struct ConfigurationErrors {
    static let brokenEverywhere = """
        log: { level: loud }
        socket: { mode: "999" }
        identities:
          - name: a
            sorce: { file: /x }
            exchange: { entra: { clientId: c } }
          - name: b
            source: { file: /x }
            exchange: { entra: { tenantId: t, clientId: c, authorityHost: "http://login.microsoftonline.com" } }
            allow: [ { user: no-such-user-tb } ]
          - name: c
            source: { file: /x }
            exchange: { entra: { tenantId: t, clientId: c } }
          - name: c
            source: { file: /y }
            exchange: { entra: { tenantId: t, clientId: c } }
        """

    @Test func everyProblemIsReportedAtOnceWithItsPath() {
        let found = issues(Self.brokenEverywhere)
        #expect(
            found.map(\.path).sorted()
                == [
                    "log.level",
                    "socket.mode",
                    "identities[0].sorce",
                    "identities[0].source",
                    "identities[0].exchange.entra.tenantId",
                    "identities[1].exchange.entra.authorityHost",
                    "identities[1].allow[0].user",
                    "identities[3].name",
                ].sorted())
        #expect(found.first { $0.path == "identities[0].sorce" }?.line == 5)
        #expect(found.first { $0.path == "identities[3].name" }?.message.contains("'c' is defined twice") == true)
    }

    /// `ConfigurationError.issues` is documented as "in file order".
    @Test func issuesAreInFileOrder() {
        let lines = issues(Self.brokenEverywhere).map { $0.line ?? 0 }
        #expect(lines == lines.sorted(), "issue lines: \(lines)")
    }

    @Test func descriptionListsEveryIssue() {
        let error = #expect(throws: ConfigurationError.self) { try load(Self.brokenEverywhere) }
        let text = error.map(String.init(describing:)) ?? ""
        #expect(text.hasPrefix("/etc/tokenbroker/config.yaml: 8 problems:"))
        #expect(text.contains("identities[0].sorce (line 5): unknown field"))
        #expect(error?.code == "invalid_configuration")
    }

    @Test(arguments: [
        (
            "identities:\n  - name: x\n    source: { file: /t }\n    exchange: { entra: { clientId: c } }\n", "identities[0].exchange.entra.tenantId",
            "is required"
        ),
        (
            "identities:\n  - name: x\n    source: { file: /t }\n    exchange: { entra: { tenantId: \"a/b\", clientId: c } }\n",
            "identities[0].exchange.entra.tenantId", "GUID or domain"
        ),
        (
            "identities:\n  - name: x\n    source: { file: /t }\n    exchange: { entra: { tenantId: t, clientId: c, authorityHost: \"http://evil\" } }\n",
            "identities[0].exchange.entra.authorityHost", "https://"
        ),
        (
            "identities:\n  - name: x\n    source: { file: t }\n    exchange: { entra: { tenantId: t, clientId: c } }\n", "identities[0].source.file",
            "absolute path"
        ),
        ("identities:\n  - name: x\n    exchange: { entra: { tenantId: t, clientId: c } }\n", "identities[0].source", "is required"),
        (
            "identities:\n  - name: \"-x\"\n    source: { file: /t }\n    exchange: { entra: { tenantId: t, clientId: c } }\n", "identities[0].name",
            "1-64 characters"
        ),
        (
            "identities:\n  - name: x\n    source: { file: /t }\n    exchange: { entra: { tenantId: t, clientId: c } }\n    allow: [ { uid: 1, gid: 2 } ]\n",
            "identities[0].allow[0]", "exactly one"
        ),
        (
            "identities:\n  - name: x\n    source: { file: /t }\n    exchange: { entra: { tenantId: t, clientId: c } }\n    allow: [ { user: no-such-user-tb } ]\n",
            "identities[0].allow[0].user", "no such user 'no-such-user-tb'"
        ),
        (
            "identities:\n  - name: x\n    source: { file: /t }\n    exchange: { entra: { tenantId: t, clientId: c } }\n    allow: [ { group: no-such-group-tb } ]\n",
            "identities[0].allow[0].group", "no such group"
        ),
        (
            "identities:\n  - name: x\n    source: { file: /t }\n    exchange: { entra: { tenantId: t, clientId: c } }\n    allow: [ { uid: -1 } ]\n",
            "identities[0].allow[0].uid", "between"
        ),
        (
            "identities:\n  - name: x\n    source: { file: /t }\n    exchange: { entra: { tenantId: t, clientId: c } }\n    allow: [ { any: maybe } ]\n",
            "identities[0].allow[0].any", "true or false"
        ),
        ("identities: { name: x }\n", "identities", "must be a list"),
        ("socket: { mode: \"999\" }\n", "socket.mode", "octal"),
        ("socket: { mode: \"01777\" }\n", "socket.mode", "octal"),
        ("socket: { path: relative.sock }\n", "socket.path", "absolute path"),
        ("socket: { path: \"\" }\n", "socket.path", "must not be empty"),
        ("log: { level: loud }\n", "log.level", "trace, debug, info"),
        ("limits: { maxConnections: 0 }\n", "limits.maxConnections", "between 1 and"),
        ("limits: { idleTimeoutSeconds: soon }\n", "limits.idleTimeoutSeconds", "integer"),
        ("limits: { eventLoopThreads: 0 }\n", "limits.eventLoopThreads", "between 1 and"),
        ("cache: { minValiditySeconds: -5 }\n", "cache.minValiditySeconds", "between 0 and"),
        ("upstream: { timeoutSeconds: 9999 }\n", "upstream.timeoutSeconds", "between 1 and 600"),
        ("sockets: {}\n", "sockets", "unknown field"),
        ("socket: /run/x.sock\n", "socket", "must be a mapping"),
    ])
    func eachProblemNamesItsField(yaml: String, path: String, message: String) {
        let found = issues(yaml)
        #expect(found.map(\.path) == [path])
        #expect(found.first?.message.contains(message) == true, "\(found)")
        #expect(found.first?.line != nil)
    }

    /// A source or an exchange names exactly one kind; the message lists the kinds.
    @Test func aSourceAndAnExchangeNameExactlyOneKind() {
        let found = issues(
            """
            identities:
              - name: two-kinds
                source: { file: /var/run/t, exec: { command: [/bin/true] } }
                exchange: {}
                allow: [ { any: true } ]
            """)
        #expect(found.map(\.path) == ["identities[0].source", "identities[0].exchange"])
        #expect(
            found.map(\.message) == [
                "must name exactly one source: file, exec, githubActions or gcpMetadata",
                "must name exactly one exchange: entra, rfc8693, awsSts, exec or none",
            ])
    }

    /// Brief §4: every field is validated at load. An unknown `socket.group` is caught
    /// only when the daemon starts (BrokerApplication.resolveGroup), so `check-config` passes it.
    @Test func unknownSocketGroupIsReportedAtLoad() {
        let found = issues("socket: { group: no-such-group-tb }\n")
        #expect(found.map(\.path) == ["socket.group"])
    }

    @Test(arguments: ["root", "0", "4242"])
    func knownOrNumericSocketGroupLoads(group: String) throws {
        #expect(try load("socket: { group: \"\(group)\" }\n").socket.group == group)
    }

    @Test(arguments: ["socket: [unclosed\n", "a: b: c\n", "{ a: 1\n", "key: 'unterminated\n"])
    func notYAMLIsOneTopLevelIssue(yaml: String) {
        let found = issues(yaml)
        #expect(found.count == 1)
        #expect(found.first?.path == "")
        #expect(found.first?.message.hasPrefix("not valid YAML") == true)
        #expect(found.first.map(String.init(describing:))?.hasPrefix("(top level)") == true)
    }

    @Test("a YAML error keeps the whole problem, with line and column of it and of its cause")
    func yamlErrorsSayWhereAndWhy() {
        let message = issues("socket:\n  path: /run/x.sock\nidentities\n  - name: a\n").first?.message ?? ""
        // Yams's own text breaks the line between the context and the problem; both must survive.
        #expect(message.contains("could not find expected ':'"), "\(message)")
        #expect(message.contains("line 4, column 9"), "\(message)")
        #expect(message.contains("while scanning a simple key at line 3, column 1"), "\(message)")
        #expect(!message.contains("\n"))
        let duplicate = issues("log: { level: info }\nlog: { level: debug }\n").first?.message ?? ""
        #expect(duplicate.contains("duplicate key 'log'"), "\(duplicate)")
    }

    @Test("an Entra prefetch scope without /.default is refused with the scope it should be")
    func entraPrefetchNeedsDotDefault() {
        let yaml = """
            identities:
              - name: storage
                source: { file: /var/run/secrets/token }
                exchange: { entra: { tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47, clientId: 8c3b0b1e-5f7a-4d2e-9a51-1f2c3d4e5f60 } }
                prefetch: ["https://storage.azure.com", "https://vault.azure.net/.default"]
            """
        let found = issues(yaml)
        #expect(found.map(\.path) == ["identities[0].prefetch[0]"])
        #expect(found.first?.message.contains("'https://storage.azure.com/.default'") == true, "\(found)")
    }

    @Test(arguments: ["this is not yaml at all, just words", "- a\n- b\n", "42\n"])
    func aDocumentThatIsNotAMappingIsRefused(yaml: String) {
        let found = issues(yaml)
        #expect(found.map(\.path) == [""])
        #expect(found.first?.message.contains("mapping") == true)
    }
}

@Suite struct ZeroConfiguration {
    static let webhook = [
        "AZURE_CLIENT_ID": client,
        "AZURE_TENANT_ID": tenant,
        "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token",
    ]

    @Test func webhookEnvironmentDefinesIdentityDefault() throws {
        let configuration = try load("", environment: Self.webhook)
        #expect(
            configuration.identities == [
                IdentityConfiguration(
                    name: "default", source: .file(path: "/var/run/secrets/azure/tokens/azure-identity-token"),
                    exchange: .entra(try EntraConfiguration(tenantId: tenant, clientId: client, authorityHost: "https://login.microsoftonline.com")))
            ])
    }

    @Test(arguments: [("https://login.microsoftonline.us/", "https://login.microsoftonline.us"), ("", "https://login.microsoftonline.com")])
    func authorityHostIsHonoured(host: String, expected: String) throws {
        var environment = Self.webhook
        environment["AZURE_AUTHORITY_HOST"] = host
        let identity = try #require(try load("", environment: environment).identities.first)
        guard case .entra(let entra) = identity.exchange else { Issue.record("not entra"); return }
        #expect(entra.authorityHost == expected)
    }

    @Test func plainHTTPAuthorityHostIsRefused() {
        var environment = Self.webhook
        environment["AZURE_AUTHORITY_HOST"] = "http://login.microsoftonline.com"
        let found = issues("", environment: environment)
        #expect(found.map(\.path) == ["env"])
        #expect(found.first?.message.contains("AZURE_AUTHORITY_HOST") == true)
    }

    @Test(arguments: ["AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"])
    func partialEnvironmentNamesTheMissingVariable(missing: String) {
        for value in [nil, ""] as [String?] {
            var environment = Self.webhook
            environment[missing] = value
            let found = issues("", environment: environment)
            #expect(found.map(\.path) == ["env"])
            #expect(found.first?.message.contains("\(missing) missing") == true, "\(found)")
        }
    }

    @Test func relativeTokenFileIsRefused() {
        var environment = Self.webhook
        environment["AZURE_FEDERATED_TOKEN_FILE"] = "token"
        #expect(issues("", environment: environment).map(\.path) == ["env.AZURE_FEDERATED_TOKEN_FILE"])
    }

    @Test func fileIdentityNamedDefaultWins() throws {
        let yaml = """
            identities:
              - name: default
                source: { file: /etc/tokenbroker/token }
                exchange: { entra: { tenantId: contoso.onmicrosoft.com, clientId: from-file } }
            """
        let identities = try load(yaml, environment: Self.webhook).identities
        #expect(identities.count == 1)
        #expect(identities.first?.source == .file(path: "/etc/tokenbroker/token"))
        #expect(identities.first?.exchange == .entra(try EntraConfiguration(tenantId: "contoso.onmicrosoft.com", clientId: "from-file")))
    }

    @Test func environmentIdentityIsAddedAfterFileIdentities() throws {
        let yaml = "identities:\n  - name: other\n    source: { file: /t }\n    exchange: { entra: { tenantId: t, clientId: c } }\n"
        #expect(try load(yaml, environment: Self.webhook).identities.map(\.name) == ["other", "default"])
    }

    @Test func noEnvironmentNoIdentity() throws {
        #expect(try load("", environment: ["PATH": "/usr/bin", "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us"]).identities.isEmpty)
    }
}

/// The YAML rules of the libyaml-based composer, as Yams applied them before it.
@Suite struct YAMLRules {
    @Test("an alias stands for its anchor's value")
    func aliasesAreResolved() {
        let found = issues("log: { level: &name debug }\nreadiness: { mode: *name }\n")
        #expect(found.map(\.message) == ["must be listening or token, got 'debug'"])
    }

    @Test func anUndefinedAliasIsAYAMLError() {
        let found = issues("log: *nowhere\n")
        #expect(found.first?.message.hasPrefix("not valid YAML") == true)
    }

    @Test("one document only, and the second is named with its line")
    func secondDocumentIsRefused() {
        let message = issues("log: { level: info }\n---\nlog: { level: debug }\n").first?.message ?? ""
        #expect(message.contains("but found another document"), "\(message)")
        #expect(message.contains("line 2, column 1"), "\(message)")
    }

    @Test("only a plain null is null: a quoted empty string is a value")
    func quotedEmptyIsNotNull() {
        #expect(issues("log: { level: '' }\n").map(\.message) == ["must not be empty"])
        #expect(issues("log: { level: \"~\" }\n").first?.message.contains("got '~'") == true)
    }

    @Test(arguments: ["yes", "on", "True", "TRUE"])
    func yaml11Booleans(_ text: String) throws {
        #expect(try load("upstream: { allowInsecureLoopback: \(text) }\n").upstream.allowInsecureLoopback == true)
    }

    @Test func nestingIsBounded() {
        let deep = String(repeating: "[", count: 300) + String(repeating: "]", count: 300)
        let message = issues("log: \(deep)\n").first?.message ?? ""
        #expect(message.contains("nested more than 256 levels deep"), "\(message)")
    }

    @Test func duplicateKeysAreNamedSorted() {
        let message = issues("b: 1\na: 1\nb: 2\na: 2\n").first?.message ?? ""
        #expect(message.contains("line 2, column 1: duplicate keys 'a', 'b'"), "\(message)")
    }
}
