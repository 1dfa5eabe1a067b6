import ArgumentParser
import BrokerClient
import FoundationEssentials
import Glibc
import TokenBrokerProtocol

/// `tokenbroker`: get tokens from a running `tokenbrokerd`.
///
/// Exit codes: 0 success; 1 the broker answered with an error (its message is
/// printed as is); 64 usage error; 69 the broker could not be reached; 76 the
/// broker's answer could not be understood.
@main
struct TokenBrokerCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenbroker",
        abstract: "Get access tokens from the local tokenbrokerd.",
        discussion: """
            Exit codes: 0 success, 1 broker error, 64 usage error, 69 broker unreachable, 76 unreadable answer.
            The socket is --socket, else $\(WireProtocol.socketEnvironmentVariable), else \(WireProtocol.defaultSocketPath).
            """,
        version: BuildVersion.text,
        subcommands: [Get.self, Status.self, Ping.self, Ready.self, Env.self, Exec.self, Relay.self, Doctor.self]
    )
}

/// Options every subcommand shares.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "Path of the broker's socket.")
    var socket: String?

    @Option(name: .long, help: "Seconds to wait for the broker.")
    var timeout: Int = 60

    var socketPath: String {
        socket ?? ProcessInfo.processInfo.environment[WireProtocol.socketEnvironmentVariable].flatMap { $0.isEmpty ? nil : $0 }
            ?? WireProtocol.defaultSocketPath
    }

    /// Sends one request, exiting with the documented code on failure.
    func send(_ request: BrokerRequest) throws -> BrokerResponse {
        do {
            let connection = try BrokerConnection(path: socketPath, timeoutSeconds: timeout)
            let response = try connection.roundTrip(request)
            if !response.ok {
                let error = response.error
                writeStandardError("tokenbroker: \(error?.code ?? "error"): \(error?.message ?? "the broker reported a failure")\n")
                throw ExitCode(1)
            }
            return response
        } catch BrokerConnection.Failure.unreachable(let reason) {
            writeStandardError("tokenbroker: \(reason)\n")
            throw ExitCode(69)
        } catch BrokerConnection.Failure.protocolError(let reason) {
            writeStandardError("tokenbroker: \(reason)\n")
            throw ExitCode(76)
        } catch BrokerConnection.Failure.timedOut {
            writeStandardError("tokenbroker: timed out waiting for the broker\n")
            throw ExitCode(69)
        } catch BrokerConnection.Failure.closed {
            writeStandardError("tokenbroker: the broker closed the connection without answering (is it stopping?)\n")
            throw ExitCode(69)
        }
    }
}

extension TokenBrokerCLI {
    /// `tokenbroker get --scope S`.
    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print an access token for a scope.")

        enum Output: String, ExpressibleByArgument, CaseIterable {
            case token, json, header
            /// `credential_process` JSON for ~/.aws/config (AWS identities).
            case awsCredentialProcess = "aws-credential-process"
        }

        @Option(name: .long, help: "Scope, e.g. https://storage.azure.com/.default")
        var scope: String?

        @Option(name: .long, help: "IMDS-style resource instead of a scope, e.g. https://storage.azure.com")
        var resource: String?

        @Option(name: .long, help: "Identity name; may be omitted when exactly one is available to you.")
        var identity: String?

        @Option(name: .long, help: "Minimum seconds the token must still be valid.")
        var minValidity: Int?

        @Option(name: .long, help: "Node mode: the Entra application (client) id to get a token for.")
        var clientId: String?

        @Option(name: .long, help: "Node mode: the Entra tenant of --client-id (default: the broker's).")
        var tenantId: String?

        @Option(name: .long, help: "Node mode: the projected volume of your pod that holds the assertion.")
        var volume: String?

        @Option(name: .shortAndLong, help: "token (default), json, header (Authorization: Bearer …), or aws-credential-process (for ~/.aws/config).")
        var output: Output = .token

        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            guard scope == nil || resource == nil else {
                throw ValidationError("give only one of --scope or --resource")
            }
            // An access token is always for a scope; only AWS credentials (or json, which
            // shows either) can do without one.
            if scope == nil, resource == nil, output == .token || output == .header {
                throw ValidationError(
                    "--scope is required for an access token, e.g. --scope https://storage.azure.com/.default (or --resource https://storage.azure.com); for AWS credentials use --output aws-credential-process"
                )
            }
        }

        func run() throws {
            let response = try connection.send(
                BrokerRequest(
                    op: "token", id: .number(1), scope: scope, resource: resource, identity: identity, minValiditySeconds: minValidity,
                    clientId: clientId, tenantId: tenantId, volume: volume))
            if output == .json {
                print(try JSONOutput.render(response))
                return
            }
            if let credentials = response.credentials {
                guard output == .awsCredentialProcess else {
                    writeStandardError(
                        "tokenbroker: identity '\(response.identity ?? "")' gives AWS credentials; use --output aws-credential-process or json\n")
                    throw ExitCode(64)
                }
                print(try JSONOutput.credentialProcess(credentials))
                return
            }
            guard let token = response.token else {
                writeStandardError("tokenbroker: the broker's answer has no token\n")
                throw ExitCode(76)
            }
            switch output {
            case .token: print(token)
            case .header: print("Authorization: \(response.tokenType ?? "Bearer") \(token)")
            case .json: print(try JSONOutput.render(response))
            case .awsCredentialProcess:
                writeStandardError("tokenbroker: identity '\(response.identity ?? "")' gives access tokens, not AWS credentials\n")
                throw ExitCode(64)
            }
        }
    }

    /// `tokenbroker status`.
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the broker's identities and cached scopes.")

        @Flag(name: .long, help: "Print the raw JSON answer.")
        var json = false

        @OptionGroup var connection: ConnectionOptions

        func run() throws {
            let response = try connection.send(BrokerRequest(op: "status", id: .number(1)))
            if json {
                print(try JSONOutput.render(response))
                return
            }
            guard let status = response.status else { throw ExitCode(76) }
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
    struct Ready: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Exit 0 if the broker is ready to serve tokens, 1 if not (with the reason).")

        @OptionGroup var connection: ConnectionOptions

        func run() throws {
            let response = try connection.send(BrokerRequest(op: "status", id: .number(1)))
            guard let status = response.status else { throw ExitCode(76) }
            guard status.ready else {
                let problems = status.identities.compactMap { identity in identity.lastError.map { "\(identity.name): \($0.message)" } }
                writeStandardError("tokenbroker: not ready\(problems.isEmpty ? "" : ": " + problems.joined(separator: "; "))\n")
                throw ExitCode(1)
            }
            print("ready")
        }
    }

    /// `tokenbroker ping`.
    struct Ping: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check that the broker answers.")

        @OptionGroup var connection: ConnectionOptions

        func run() throws {
            _ = try connection.send(BrokerRequest(op: "ping", id: .number(1)))
            print("ok")
        }
    }
}

enum JSONOutput {
    /// The document `credential_process` in ~/.aws/config expects (Version 1).
    /// Keys in sorted order, as JSONSerialization's `.sortedKeys` wrote them before.
    static func credentialProcess(_ credentials: AWSCredentialsObject) throws -> String {
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

    static func render(_ response: BrokerResponse) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(response), as: UTF8.self)
    }
}

extension TokenBrokerCLI {
    /// `tokenbroker doctor`: runs `tokenbroker-doctor`, installed beside this binary. The
    /// doctor's HTTPS checks need a TLS stack; the CLI, which runs in every pod as
    /// `tokenbroker relay`, stays without one.
    struct Doctor: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the environment, token file, socket, broker, clock and issuer; print PASS/WARN/FAIL with the fix.",
            discussion: "Runs tokenbroker-doctor (installed beside tokenbroker); `tokenbroker doctor --help` lists its options.")

        @Argument(parsing: .captureForPassthrough, help: "Options for tokenbroker-doctor.")
        var arguments: [String] = []

        func run() throws {
            let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
            let doctor = String(me[..<(me.lastIndex(of: "/") ?? me.startIndex)]) + "/tokenbroker-doctor"
            let argv = [doctor] + arguments
            var cArgv = argv.map { strdup($0) } + [nil]
            execv(doctor, &cArgv)
            writeStandardError("tokenbroker: cannot run \(doctor): \(String(cString: strerror(errno))) (it is installed beside tokenbroker)\n")
            throw ExitCode(69)
        }
    }
}
