import Foundation
import Testing
import TokenBrokerProtocol

/// The CLI's own command-line parser (it replaced swift-argument-parser): the real binary,
/// its exit codes, and errors that name what was wrong.
@Suite("tokenbroker's command line")
struct CLIArgumentTests {
    private func cli(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await runCommand(TestEnvironment.cliPath, arguments, environment: [:])
    }

    @Test(
        "a usage error exits 64 and names the problem and the command's usage",
        arguments: [
            (["get", "--scope", "x", "--bogus"], "unknown option '--bogus'"),
            (["get", "--scope", "x", "--bogus=1"], "unknown option '--bogus'"),
            // Exactly two dashes make a long option (ArgumentParser refused `---socket` too).
            (["ping", "---socket=/nonexistent"], "unknown option '---socket'"),
            (["get", "--scope"], "missing value for '--scope <scope>'"),
            (["get", "--scope", "--timeout", "5"], "missing value for '--scope <scope>'"),
            (["get", "--scope", "x", "-o", "yaml"], "'yaml' is not a value of --output; use one of token, json, header, aws-credential-process"),
            (["get", "--scope", "x", "--timeout", "soon"], "--timeout must be a whole number, not 'soon'"),
            (["status", "--json=yes"], "--json is a flag and takes no value"),
            (["ping", "extra"], "unexpected argument 'extra'"),
            (["env", "--protocol", "gcp"], "'gcp' is not a value of --protocol"),
            (["exec", "--socket", "/x"], "name a command to run"),
            (["relay", "--listen", "127.0.0.1:0", "--max-connections", "0"], "--max-connections must be 1-4096"),
        ])
    func usageErrors(arguments: [String], message: String) async throws {
        let result = try await cli(arguments)
        #expect(result.status == 64, "\(arguments): \(result.stderr)")
        #expect(result.stderr.hasPrefix("Error: ") && result.stderr.contains(message), "\(arguments): \(result.stderr)")
        #expect(result.stderr.contains("Usage: tokenbroker \(arguments[0]) "), "\(result.stderr)")
        #expect(result.stdout.isEmpty)
    }

    @Test("an unknown subcommand or top-level option exits 64 and lists the subcommands")
    func unknownSubcommand() async throws {
        for word in ["frob", "--frob"] {
            let result = try await cli([word])
            #expect(result.status == 64)
            #expect(result.stderr.contains("unknown \(word.hasPrefix("-") ? "option" : "subcommand") '\(word)'"), "\(result.stderr)")
            #expect(result.stderr.contains("get, status, ping, ready, env, exec, relay, doctor"), "\(result.stderr)")
        }
    }

    @Test("help: the overview, each subcommand's options with defaults and values, exit 0")
    func help() async throws {
        for arguments in [[], ["--help"], ["-h"], ["help"]] {
            let result = try await cli(arguments)
            #expect(result.status == 0)
            #expect(result.stdout.hasPrefix("OVERVIEW: Get access tokens from the local tokenbrokerd."), "\(arguments)")
            #expect(result.stdout.contains("  relay                   Serve the App Service"), "\(result.stdout)")
        }
        for arguments in [["get", "--help"], ["help", "get"], ["get", "--scope", "x", "-h"]] {
            let result = try await cli(arguments)
            #expect(result.status == 0)
            #expect(result.stdout.contains("USAGE: tokenbroker get [--scope <scope>] [--resource <resource>]"), "\(result.stdout)")
            #expect(result.stdout.contains("  -o, --output <output>   token (default), json"), "\(result.stdout)")
            #expect(
                result.stdout.contains("(values: token, json, header, aws-credential-process;\n                          default: token)"),
                "\(result.stdout)")
            #expect(result.stdout.contains("  --timeout <timeout>     Seconds to wait for the broker. (default: 60)"), "\(result.stdout)")
        }
        let version = try await cli(["get", "--version"])
        let rootVersion = try await cli(["--version"])
        #expect(version.status == 0 && !version.stdout.isEmpty && version.stdout == rootVersion.stdout)
        let relay = try await cli(["relay", "--help"])
        #expect(relay.stdout.contains("--listen <listen>") && relay.stdout.contains("127.0.0.1:8181)") && relay.stdout.contains("--check"))
    }

    @Test("`get --output json` and `status --json` print what JSONEncoder printed: pretty, sorted keys, slashes as is")
    func jsonOutput() async throws {
        try await Scenario.run { scenario in
            for arguments in [["get", "--scope", Scenario.scope, "-o", "json"], ["status", "--json"]] {
                let result = try await runCommand(TestEnvironment.cliPath, arguments + ["--socket", scenario.broker.socketPath])
                #expect(result.status == 0, "\(arguments): \(result.stderr)")
                let response = try JSONDecoder().decode(BrokerResponse.self, from: Data(result.stdout.utf8))
                #expect(response.ok && (arguments[0] == "get" ? response.token != nil : response.status?.identities.first?.name == "default"))
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                let expected = String(decoding: try encoder.encode(response), as: UTF8.self) + "\n"
                #expect(result.stdout == expected)
            }
        }
    }

    @Test("exec takes the command after -- or at the first word that is not an option")
    func execCommandWords() async throws {
        let socket = "/nonexistent/broker.sock"
        for arguments in [["exec", "--socket", socket, "--", "/bin/true"], ["exec", "--socket", socket, "/bin/true", "--socket", "x"]] {
            let result = try await cli(arguments)
            // Parsed: the broker is asked for the environment (and cannot be reached).
            #expect(result.status == 69, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains("cannot connect to the broker at \(socket)"), "\(result.stderr)")
        }
    }

    @Test("packaging's completions and manual page come from the same table")
    func completionsAndDumpHelp() async throws {
        let bash = try await cli(["--generate-completion-script", "bash"])
        #expect(bash.status == 0 && bash.stdout.contains("complete -F _tokenbroker tokenbroker"))
        #expect(
            bash.stdout.contains(#""get --output"|"get -o") COMPREPLY=($(compgen -W "token json header aws-credential-process""#), "\(bash.stdout)")
        let syntax = try await runCommand("/bin/bash", ["-n", "-c", bash.stdout])
        #expect(syntax.status == 0, "\(syntax.stderr)")
        for shell in ["zsh", "fish"] {
            let script = try await cli(["--generate-completion-script=\(shell)"])
            #expect(script.status == 0 && script.stdout.contains("relay") && script.stdout.contains("max-connections"), "\(shell)")
        }
        let unknown = try await cli(["--generate-completion-script", "powershell"])
        #expect(unknown.status == 64 && unknown.stderr.contains("bash, zsh or fish"))

        let dump = try await cli(["--experimental-dump-help"])
        let info = try #require(try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any])
        let command = try #require(info["command"] as? [String: Any])
        let subcommands = try #require(command["subcommands"] as? [[String: Any]])
        #expect(subcommands.compactMap { $0["commandName"] as? String } == ["get", "status", "ping", "ready", "env", "exec", "relay", "doctor"])
        let get = try #require(subcommands.first?["arguments"] as? [[String: Any]])
        let output = try #require(get.first { ($0["valueName"] as? String) == "output" })
        #expect(
            output["allValues"] as? [String] == ["token", "json", "header", "aws-credential-process"] && output["defaultValue"] as? String == "token")
    }
}
