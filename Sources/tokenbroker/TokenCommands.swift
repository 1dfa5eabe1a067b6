import CommandLineTable
import Glibc
import PlainJSON
import TokenBrokerProtocol

/// `tokenbroker get --scope S`.
struct Get: Subcommand {
    enum Output: String, CaseIterable {
        case token, json, header
        /// `credential_process` JSON for ~/.aws/config (AWS identities).
        case awsCredentialProcess = "aws-credential-process"
    }

    static let spec = CommandSpec(
        name: "get", abstract: "Print an access token for a scope.",
        options: [
            .option("scope", help: "Scope, e.g. https://storage.azure.com/.default"),
            .option("resource", help: "IMDS-style resource instead of a scope, e.g. https://storage.azure.com"),
            .option("identity", help: "Identity name; may be omitted when exactly one is available to you."),
            .option("min-validity", help: "Minimum seconds the token must still be valid."),
            .option("client-id", help: "Node mode: the Entra application (client) id to get a token for."),
            .option("tenant-id", help: "Node mode: the Entra tenant of --client-id (default: the broker's)."),
            .option("volume", help: "Node mode: the projected volume of your pod that holds the assertion."),
            .option(
                "output", short: "o",
                help: "token (default), json, header (Authorization: Bearer …), or aws-credential-process (for ~/.aws/config).",
                default: "token", choices: Output.allCases.map(\.rawValue)),
        ] + ConnectionOptions.specs)

    let request: BrokerRequest
    let output: Output
    let connection: ConnectionOptions

    init(_ arguments: ParsedArguments) throws(UsageError) {
        let scope = arguments.string("scope")
        let resource = arguments.string("resource")
        output = arguments.choice("output") ?? .token
        guard scope == nil || resource == nil else { throw UsageError("give only one of --scope or --resource") }
        // An access token is always for a scope; only AWS credentials (or json, which
        // shows either) can do without one.
        if scope == nil, resource == nil, output == .token || output == .header {
            throw UsageError(
                "--scope is required for an access token, e.g. --scope https://storage.azure.com/.default (or --resource https://storage.azure.com); for AWS credentials use --output aws-credential-process"
            )
        }
        request = BrokerRequest(
            op: "token", id: .number(1), scope: scope, resource: resource, identity: arguments.string("identity"),
            minValiditySeconds: try arguments.int("min-validity"), clientId: arguments.string("client-id"), tenantId: arguments.string("tenant-id"),
            volume: arguments.string("volume"))
        connection = try ConnectionOptions(arguments)
    }

    func run() throws(ExitCode) {
        let (response, document) = try connection.answer(request)
        if output == .json {
            print(UntypedJSON.prettyPrinted(document))
            return
        }
        if let credentials = response.credentials {
            guard output == .awsCredentialProcess else {
                throw fail("identity '\(response.identity ?? "")' gives AWS credentials; use --output aws-credential-process or json", code: 64)
            }
            print(JSONOutput.credentialProcess(credentials))
            return
        }
        guard let token = response.token else { throw fail("the broker's answer has no token", code: 76) }
        switch output {
        case .token: print(token)
        case .header: print("Authorization: \(response.tokenType ?? "Bearer") \(token)")
        case .json: print(UntypedJSON.prettyPrinted(document))
        case .awsCredentialProcess: throw fail("identity '\(response.identity ?? "")' gives access tokens, not AWS credentials", code: 64)
        }
    }
}

/// `tokenbroker status`.
struct Status: Subcommand {
    static let spec = CommandSpec(
        name: "status", abstract: "Show the broker's identities and cached scopes.",
        options: [.flag("json", help: "Print the raw JSON answer.")] + ConnectionOptions.specs)

    let json: Bool
    let connection: ConnectionOptions

    init(_ arguments: ParsedArguments) throws(UsageError) {
        json = arguments.flag("json")
        connection = try ConnectionOptions(arguments)
    }

    func run() throws(ExitCode) {
        let (response, document) = try connection.answer(BrokerRequest(op: "status", id: .number(1)))
        if json {
            print(UntypedJSON.prettyPrinted(document))
            return
        }
        guard let status = response.status else { throw fail("the broker's status has no body", code: 76) }
        print("ready: \(status.ready ? "yes" : "no")")
        for identity in status.identities {
            print("identity \(identity.name): \(identity.exchange) from \(identity.source)")
            for scope in identity.cachedScopes { print("  cached: \(scope)") }
            if let error = identity.lastError { print("  last error: \(error.code): \(error.message)") }
        }
        for sink in status.sinks ?? [] {
            let expires = sink.expiresOn.map { ", token expires at \($0)" } ?? ", no token written"
            print("sink \(sink.path): \(sink.format) of identity \(sink.identity) for \(sink.scope)\(expires)")
            if let error = sink.lastError { print("  last error: \(error.code): \(error.message)") }
        }
    }
}

/// `tokenbroker ready`: exit 0 when the broker is ready (what `/readyz` answers),
/// for probes that cannot reach the socket over HTTP (Kubernetes exec probes).
struct Ready: Subcommand {
    static let spec = CommandSpec(
        name: "ready", abstract: "Exit 0 if the broker is ready to serve tokens, 1 if not (with the reason).", options: ConnectionOptions.specs)

    let connection: ConnectionOptions

    init(_ arguments: ParsedArguments) throws(UsageError) { connection = try ConnectionOptions(arguments) }

    func run() throws(ExitCode) {
        let response = try connection.send(BrokerRequest(op: "status", id: .number(1)))
        guard let status = response.status else { throw fail("the broker's status has no body", code: 76) }
        guard status.ready else {
            let problems = status.identities.compactMap { identity in identity.lastError.map { "\(identity.name): \($0.message)" } }
            throw fail("not ready\(problems.isEmpty ? "" : ": " + problems.joined(separator: "; "))", code: 1)
        }
        print("ready")
    }
}

/// `tokenbroker ping`.
struct Ping: Subcommand {
    static let spec = CommandSpec(name: "ping", abstract: "Check that the broker answers.", options: ConnectionOptions.specs)

    let connection: ConnectionOptions

    init(_ arguments: ParsedArguments) throws(UsageError) { connection = try ConnectionOptions(arguments) }

    func run() throws(ExitCode) {
        _ = try connection.send(BrokerRequest(op: "ping", id: .number(1)))
        print("ok")
    }
}

/// `tokenbroker doctor`: runs `tokenbroker-doctor`, installed beside this binary. The
/// doctor's HTTPS checks need a TLS stack; the CLI, which runs in every pod as
/// `tokenbroker relay`, stays without one.
struct Doctor: Subcommand {
    static let spec = CommandSpec(
        name: "doctor", abstract: "Check the environment, token file, socket, broker, clock and issuer; print PASS/WARN/FAIL with the fix.",
        discussion: "Runs tokenbroker-doctor (installed beside tokenbroker); `tokenbroker doctor --help` lists its options.",
        trailing: .passthrough(help: "Options for tokenbroker-doctor."))

    let arguments: [String]

    init(_ arguments: ParsedArguments) { self.arguments = arguments.trailing }

    func run() throws(ExitCode) {
        let me = executablePath() ?? CommandLine.arguments[0]
        let doctor = String(me[..<(me.lastIndex(of: "/") ?? me.startIndex)]) + "/tokenbroker-doctor"
        var argv = ([doctor] + arguments).map { strdup($0) } + [nil]
        execv(doctor, &argv)
        throw fail("cannot run \(doctor): \(String(cString: strerror(errno))) (it is installed beside tokenbroker)", code: 69)
    }
}

enum JSONOutput {
    /// The document `credential_process` in ~/.aws/config expects (Version 1).
    /// Keys in sorted order, as JSONSerialization's `.sortedKeys` wrote them before.
    static func credentialProcess(_ credentials: AWSCredentialsObject) -> String {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("AccessKeyId", credentials.accessKeyId)
        writer.field("AccountId", credentials.accountId)
        writer.field("Expiration", credentials.expiration)
        writer.field("SecretAccessKey", credentials.secretAccessKey)
        writer.field("SessionToken", credentials.sessionToken)
        writer.field("Version", 1)
        writer.endObject()
        return writer.text
    }
}
