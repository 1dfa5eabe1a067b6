import BrokerClient
import CommandLineTable
import Glibc
import TokenBrokerProtocol

/// One subcommand: its options (`spec`), read and checked in `init`, then `run`.
protocol Subcommand {
    static var spec: CommandSpec { get }
    /// Reads the parsed command line; a `UsageError` names what is wrong with it.
    init(_ arguments: ParsedArguments) throws(UsageError)
    /// Does the work; throws `ExitCode` (its message printed) to fail.
    func run() throws(ExitCode)
}

/// `tokenbroker`: get tokens from a running `tokenbrokerd`.
///
/// Exit codes: 0 success; 1 the broker answered with an error (its message is
/// printed as is); 64 usage error; 69 the broker could not be reached; 76 the
/// broker's answer could not be understood.
@main
enum TokenBrokerCLI {
    static var subcommands: [any Subcommand.Type] { [Get.self, Status.self, Ping.self, Ready.self, Env.self, Exec.self, Relay.self, Doctor.self] }

    static let tool = Tool(
        name: "tokenbroker",
        abstract: "Get access tokens from the local tokenbrokerd.",
        discussion: """
            Exit codes: 0 success, 1 broker error, 64 usage error, 69 broker unreachable, 76 unreadable answer.
            The socket is --socket, else $\(WireProtocol.socketEnvironmentVariable), else \(WireProtocol.defaultSocketPath).
            """,
        version: BuildVersion.text, commands: subcommands.map { $0.spec })

    static func main() {
        exit(run(Array(CommandLine.arguments.dropFirst())))
    }

    /// Runs the command line `words` (without the program name); the exit status.
    static func run(_ words: [String]) -> Int32 {
        switch tool.read(words) {
        case .output(let text):
            print(text, terminator: "")
            return 0
        case .usageError(let text):
            writeStandardError(text)
            return 64
        case .run(let spec, let arguments):
            guard let command = subcommands.first(where: { $0.spec.name == spec.name }) else { return 64 }
            do {
                try command.init(arguments).run()
                return 0
            } catch let error as UsageError {
                writeStandardError(tool.usageError(error.message, command: spec))
                return 64
            } catch let exit as ExitCode {
                return exit.status
            } catch {
                writeStandardError("tokenbroker: \(error)\n")
                return 1
            }
        }
    }
}

/// Options every subcommand that talks to the broker shares.
struct ConnectionOptions {
    static let specs: [OptionSpec] = [
        .option("socket", help: "Path of the broker's socket."),
        .option("timeout", help: "Seconds to wait for the broker.", default: "60"),
    ]

    var socket: String?
    var timeout: Int

    init(_ arguments: ParsedArguments) throws(UsageError) {
        socket = arguments.string("socket")
        timeout = try arguments.int("timeout") ?? 60
    }

    var socketPath: String {
        socket ?? environmentValue(WireProtocol.socketEnvironmentVariable).flatMap { $0.isEmpty ? nil : $0 } ?? WireProtocol.defaultSocketPath
    }

    /// Sends one request, exiting with the documented code on failure.
    func send(_ request: BrokerRequest) throws(ExitCode) -> BrokerResponse {
        try answer(request).response
    }

    /// `send`, with the answer's JSON object as the broker wrote it.
    func answer(_ request: BrokerRequest) throws(ExitCode) -> (response: BrokerResponse, document: [String: Any]) {
        do {
            let connection = try BrokerConnection(path: socketPath, timeoutSeconds: timeout)
            let answer = try connection.answer(request)
            if !answer.response.ok {
                let error = answer.response.error
                writeStandardError("tokenbroker: \(error?.code ?? "error"): \(error?.message ?? "the broker reported a failure")\n")
                throw ExitCode(1)
            }
            return answer
        } catch let exit as ExitCode {
            throw exit
        } catch BrokerConnection.Failure.unreachable(let reason) {
            throw fail(reason, code: 69)
        } catch BrokerConnection.Failure.protocolError(let reason) {
            throw fail(reason, code: 76)
        } catch BrokerConnection.Failure.timedOut {
            throw fail("timed out waiting for the broker", code: 69)
        } catch {
            throw fail("the broker closed the connection without answering (is it stopping?)", code: 69)
        }
    }
}

/// Prints `tokenbroker: message` and gives the exit code to throw.
func fail(_ message: String, code: Int32) -> ExitCode {
    writeStandardError("tokenbroker: \(message)\n")
    return ExitCode(code)
}
