import ArgumentParser
import BrokerClient
import Foundation
import TokenBrokerProtocol

/// `tokenbroker-doctor` (what `tokenbroker doctor` runs): the troubleshooting list of a
/// workload-identity setup, run. A binary of its own because its HTTPS checks need a TLS
/// stack the CLI, which runs in every pod, does without.
@main
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenbroker doctor",
        abstract: "Check the environment, token file, socket, broker, clock and issuer; print PASS/WARN/FAIL with the fix.",
        discussion: """
            Exit status 1 when any check fails, 0 otherwise (warnings included). Never prints a token, only its claims.
            --output json prints the document described in docs/doctor.md.
            """,
        version: BuildVersion.text)

    enum Output: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    @Option(name: .long, help: "Path of the broker's socket (default: $TOKENBROKER_SOCKET, else \(WireProtocol.defaultSocketPath)).")
    var socket: String?

    @Option(name: .long, help: "The assertion file to check (default: $AZURE_FEDERATED_TOKEN_FILE).")
    var tokenFile: String?

    @Option(name: .long, help: "The audience the federated credential expects.")
    var audience: String = DoctorDefaults.audience

    @Option(
        name: .long, help: "The token service whose clock to compare with (default: $AZURE_AUTHORITY_HOST, else \(DoctorDefaults.authorityHost)).")
    var authorityHost: String?

    @Option(name: .long, help: "A PEM bundle to trust in addition to the system roots and $SSL_CERT_FILE.")
    var caFile: String?

    @Flag(name: .long, help: "Skip the checks that need the network (clock skew, issuer discovery and keys).")
    var offline = false

    @Option(name: .long, help: "Seconds each socket or HTTPS exchange may take.")
    var timeout: Int = 10

    @Option(name: .shortAndLong, help: "text (default) or json.")
    var output: Output = .text

    func validate() throws {
        guard timeout > 0 else { throw ValidationError("--timeout must be a positive number of seconds") }
    }

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let nonEmpty = { (name: String) in environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        var http: UpstreamDoctorHTTP?
        if !offline {
            do {
                http = try UpstreamDoctorHTTP(environment: environment, caFile: caFile, timeoutSeconds: timeout)
            } catch {
                FileHandle.standardError.write(Data("tokenbroker doctor: \(error)\n".utf8))
                throw ExitCode(64)
            }
        }
        defer { http?.shutdown() }
        let context = DoctorContext(
            environment: environment,
            socketPath: socket ?? nonEmpty(WireProtocol.socketEnvironmentVariable) ?? WireProtocol.defaultSocketPath,
            tokenFilePath: tokenFile ?? nonEmpty("AZURE_FEDERATED_TOKEN_FILE"),
            expectedAudience: audience,
            authorityHost: authorityHost ?? nonEmpty("AZURE_AUTHORITY_HOST") ?? DoctorDefaults.authorityHost,
            timeoutSeconds: timeout, http: http)
        let checks: [any DoctorCheck] = [
            EnvironmentCheck(), TokenFileCheck(), SocketCheck(), BrokerStatusCheck(), ClockSkewCheck(), IssuerKeysCheck(),
        ]
        let report = DoctorReport(checks.flatMap { $0.run(context) })
        print(output == .json ? try report.json() : report.text())
        if !report.ok { throw ExitCode(1) }
    }
}
