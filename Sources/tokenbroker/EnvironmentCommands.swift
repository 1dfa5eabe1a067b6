import CommandLineTable
import Glibc
import PlainJSON
import TokenBrokerProtocol

/// `tokenbroker env`: the exports an unmodified program needs to get tokens through
/// the compatibility endpoints, as the running broker reports them.
struct Env: Subcommand {
    static let spec = CommandSpec(
        name: "env", abstract: "Print the environment an unmodified Azure SDK needs (eval \"$(tokenbroker env)\").",
        discussion: """
            IDENTITY_ENDPOINT and IDENTITY_HEADER (App Service protocol), AZURE_POD_IDENTITY_AUTHORITY_HOST (IMDS), TOKENBROKER_SOCKET, \
            AZURE_CLIENT_ID with --identity, and AWS_CONTAINER_CREDENTIALS_FULL_URI with AWS_CONTAINER_AUTHORIZATION_TOKEN when AWS identities are available.
            With --relay URL: the same variables for a `tokenbroker relay` at URL (all five, without asking the broker; \
            the secret from --identity-header-file or IDENTITY_HEADER, as the relay reads it).
            """,
        options: [
            .option("identity", help: "Identity to select through AZURE_CLIENT_ID (needed when several are available to you)."),
            .option(
                "protocol",
                help:
                    "Print only this protocol's variables (repeatable): app-service, app-service-2017 (MSI_ENDPOINT, for azure-identity < 1.7 and msrestazure), imds, aws.",
                choices: CompatEnvironment.Route.allCases.map(\.rawValue), repeatable: true),
        ] + RelayEnvironmentOptions.specs + ConnectionOptions.specs)

    let identity: String?
    let protocols: [CompatEnvironment.Route]
    let relay: RelayEnvironmentOptions
    let connection: ConnectionOptions

    init(_ arguments: ParsedArguments) throws(UsageError) {
        identity = arguments.string("identity")
        protocols = arguments.strings("protocol").compactMap(CompatEnvironment.Route.init(rawValue:))
        relay = try RelayEnvironmentOptions(arguments, identity: identity)
        connection = try ConnectionOptions(arguments)
        guard relay.relay == nil || protocols.isEmpty else { throw UsageError("--protocol does not go with --relay yet") }
    }

    func run() throws(ExitCode) {
        var variables = try relay.variables()
        if variables == nil { variables = try CompatEnvironment.variables(connection: connection, identity: identity, protocols: protocols) }
        for (name, value) in variables ?? [] { print("export \(name)=\(CompatEnvironment.shellQuoted(value))") }
    }
}

/// `tokenbroker exec -- CMD …`: runs a command with `tokenbroker env`'s variables set.
struct Exec: Subcommand {
    static let spec = CommandSpec(
        name: "exec", abstract: "Run a command with the environment `tokenbroker env` prints.",
        options: [.option("identity", help: "Identity to select through AZURE_CLIENT_ID.")] + RelayEnvironmentOptions.specs + ConnectionOptions.specs,
        trailing: .command(help: "The command and its arguments (after --)."))

    let identity: String?
    let relay: RelayEnvironmentOptions
    let connection: ConnectionOptions
    let command: [String]

    init(_ arguments: ParsedArguments) throws(UsageError) {
        identity = arguments.string("identity")
        relay = try RelayEnvironmentOptions(arguments, identity: identity)
        connection = try ConnectionOptions(arguments)
        command = arguments.trailing
        guard !command.isEmpty else { throw UsageError("name a command to run: tokenbroker exec -- CMD [ARG…]") }
    }

    func run() throws(ExitCode) {
        var variables = try relay.variables()
        if variables == nil { variables = try CompatEnvironment.variables(connection: connection, identity: identity) }
        for (name, value) in variables ?? [] { setenv(name, value, 1) }
        var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        execvp(command[0], &argv)
        // Only reached when exec failed; 127 like a shell for "not found", 126 otherwise.
        let code: Int32 = errno == ENOENT ? 127 : 126
        throw fail("cannot run \(command[0]): \(String(cString: strerror(errno)))", code: code)
    }
}

/// Turns the broker's `status` into environment variables.
enum CompatEnvironment {
    /// A managed-identity protocol whose variables `env --protocol` prints.
    enum Route: String, CaseIterable {
        /// `IDENTITY_ENDPOINT` + `IDENTITY_HEADER` (App Service 2019-08-01).
        case appService = "app-service"
        /// `MSI_ENDPOINT` + `MSI_SECRET` (App Service 2017-09-01).
        case appService2017 = "app-service-2017"
        /// `AZURE_POD_IDENTITY_AUTHORITY_HOST` only: azure-identity 1.7-1.8 fail when
        /// `IDENTITY_ENDPOINT` is set beside it.
        case imds
        /// `AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
        case aws
    }

    static func variables(connection: ConnectionOptions, identity: String?, protocols: [Route] = []) throws(ExitCode) -> [(String, String)] {
        let response = try connection.send(BrokerRequest(op: "status", id: .number(1)))
        guard let status = response.status else { throw fail("the broker's status has no body", code: 76) }
        guard let compat = status.compat, let endpoint = compat.identityEndpoint, let authority = compat.imdsAuthorityHost else {
            throw fail(
                "the broker has no compatibility listener on loopback TCP; set compat.tcp in its configuration (docs/configuration.md)", code: 1)
        }
        guard let header = compat.identityHeader else {
            throw fail("no identity is available to you (uid \(getuid())), so the broker does not give out its identity header", code: 1)
        }
        // Without --protocol: today's set (both current Azure protocols, the socket, AWS when available).
        let wanted = Set(protocols.isEmpty ? [.appService, .imds, .aws] : protocols)
        var variables: [(String, String)] = []
        if wanted.contains(.appService) { variables += [("IDENTITY_ENDPOINT", endpoint), ("IDENTITY_HEADER", header)] }
        if wanted.contains(.appService2017) { variables += [("MSI_ENDPOINT", endpoint), ("MSI_SECRET", header)] }
        if wanted.contains(.imds) { variables.append(("AZURE_POD_IDENTITY_AUTHORITY_HOST", authority)) }
        if protocols.isEmpty { variables.append((WireProtocol.socketEnvironmentVariable, absolute(connection.socketPath))) }
        // AWS SDKs: the container credentials endpoint, for the named AWS identity or,
        // without a name, the caller's only one.
        let aws = status.identities.filter { $0.exchange == "aws-sts" }
        if let identity {
            guard let entry = status.identities.first(where: { $0.name == identity }) else {
                throw fail("identity '\(identity)' is not available to you", code: 1)
            }
            if let clientId = entry.clientId { variables.append(("AZURE_CLIENT_ID", clientId)) }
            if entry.exchange == "aws-sts", wanted.contains(.aws) {
                variables.append(("AWS_CONTAINER_CREDENTIALS_FULL_URI", "\(authority)/aws/credentials/\(identity)"))
            }
        } else if wanted.contains(.aws), !aws.isEmpty || protocols.contains(.aws) {
            variables.append(("AWS_CONTAINER_CREDENTIALS_FULL_URI", "\(authority)/aws/credentials"))
        }
        if variables.contains(where: { $0.0 == "AWS_CONTAINER_CREDENTIALS_FULL_URI" }) {
            variables.append(("AWS_CONTAINER_AUTHORIZATION_TOKEN", header))
        }
        return variables
    }

    /// `'value'` with embedded quotes escaped, safe for `eval`.
    static func shellQuoted(_ value: String) -> String {
        "'" + value.split(separator: "'", omittingEmptySubsequences: false).joined(separator: #"'\''"#) + "'"
    }

    private static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : (currentDirectory() ?? ".") + "/" + path
    }
}

/// `--relay URL` of `env` and `exec`: the variables for a `tokenbroker relay` instead of the
/// broker's own compatibility listener.
struct RelayEnvironmentOptions {
    static let specs: [OptionSpec] = [
        .option("relay", help: "Print the variables for a `tokenbroker relay` at this URL (http://127.0.0.1:PORT) instead of asking the broker."),
        .option("identity-header-file", help: "With --relay: file holding the identity header secret (default: IDENTITY_HEADER)."),
    ]

    /// `http://127.0.0.1:PORT`, without a trailing `/`.
    let relay: String?
    let identityHeaderFile: String?

    init(_ arguments: ParsedArguments, identity: String?) throws(UsageError) {
        identityHeaderFile = arguments.string("identity-header-file")
        guard var relay = arguments.string("relay") else {
            guard identityHeaderFile == nil else { throw UsageError("--identity-header-file goes with --relay") }
            self.relay = nil
            return
        }
        guard identity == nil else {
            throw UsageError(
                "with --relay the node's broker chooses the identity by client id: set AZURE_CLIENT_ID for the app instead of --identity")
        }
        while relay.hasSuffix("/") { relay.removeLast() }
        // http://HOST:PORT and nothing else: a loopback address with a port, no path, query or user.
        let authority = relay.dropFirst("http://".count)
        guard relay.hasPrefix("http://"), !authority.contains(where: { "/?#@".contains($0) }),
            case .success = LoopbackAddress.parse(String(authority))
        else { throw UsageError("--relay must be http://127.0.0.1:PORT (or another loopback address with a port), as the relay's --listen") }
        self.relay = relay
    }

    /// The five variables, or nil without `--relay`.
    func variables() throws(ExitCode) -> [(String, String)]? {
        guard let base = relay else { return nil }
        let text: String?
        if let identityHeaderFile {
            text = readTextFile(identityHeaderFile)
            guard text != nil else {
                throw fail("cannot read --identity-header-file \(identityHeaderFile): \(String(cString: strerror(errno)))", code: 64)
            }
        } else {
            text = environmentValue("IDENTITY_HEADER")
        }
        guard let header = text?.trimmed(), !header.isEmpty else {
            throw fail("--relay needs the relay's identity header secret: --identity-header-file FILE or IDENTITY_HEADER", code: 64)
        }
        return [
            ("IDENTITY_ENDPOINT", base + RelayResponder.appServicePath),
            ("IDENTITY_HEADER", header),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", base),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", base + RelayResponder.awsPath),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", header),
        ]
    }
}
