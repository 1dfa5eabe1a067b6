import CommandLineTable
import Testing

/// The command table both executables read their command lines with. End to end (the real
/// binaries' help, exit codes and completions) it is covered by the integration suite; here,
/// what each kind of command line asks for.
@Suite("CommandLineTable: what a command line asks for")
struct ToolTests {
    static let run = CommandSpec(
        name: "run", abstract: "Run it.",
        options: [
            .option("config", help: "Configuration file."),
            .flag("dev", help: "Dev mode."),
            .option("format", short: "f", help: "Output format.", default: "text", choices: ["text", "json"]),
        ])
    static let check = CommandSpec(name: "check", abstract: "Check it.", options: [.option("config", help: "Configuration file.")])
    static let daemon = Tool(name: "daemon", abstract: "A daemon.", version: "1.2.3", commands: [run, check], defaultCommand: "run")
    static let cli = Tool(name: "cli", abstract: "A client.", discussion: "Exit codes: 0 or 64.", version: "1.2.3", commands: [run, check])

    /// The command and arguments `words` run, or nil (recording why).
    func ran(_ tool: Tool, _ words: [String]) -> (command: String, arguments: ParsedArguments)? {
        guard case .run(let command, let arguments) = tool.read(words) else {
            Issue.record("\(words) did not run a command: \(tool.read(words))")
            return nil
        }
        return (command.name, arguments)
    }

    func output(_ tool: Tool, _ words: [String]) -> String {
        guard case .output(let text) = tool.read(words) else { return "not output: \(tool.read(words))" }
        return text
    }

    func usageError(_ tool: Tool, _ words: [String]) -> String {
        guard case .usageError(let text) = tool.read(words) else { return "not a usage error: \(tool.read(words))" }
        return text
    }

    @Test("without a subcommand, options go to the default command; none at all runs it")
    func defaultCommand() throws {
        let given = try #require(ran(Self.daemon, ["--config", "/etc/x.yaml", "--dev"]))
        #expect(given.command == "run" && given.arguments.string("config") == "/etc/x.yaml" && given.arguments.flag("dev"))
        #expect(ran(Self.daemon, [])?.command == "run")
        #expect(ran(Self.daemon, ["check", "--config=/c"])?.arguments.string("config") == "/c")
        // A word that is neither an option nor a subcommand is not the default command's.
        #expect(usageError(Self.daemon, ["serve"]).hasPrefix("Error: unknown subcommand 'serve'; the subcommands are run, check\n"))
        // The default command's own checks name it.
        #expect(usageError(Self.daemon, ["--bogus"]).contains("unknown option '--bogus' (see 'daemon run --help')"))
    }

    @Test("a tool without a default command prints help for no words and refuses an option")
    func noDefaultCommand() {
        #expect(output(Self.cli, []) == Self.cli.help + "\n")
        #expect(usageError(Self.cli, ["--config", "x"]).hasPrefix("Error: unknown option '--config'; the subcommands are run, check"))
    }

    @Test("help, the version and each command's help; the default command is marked")
    func help() {
        #expect(output(Self.daemon, ["--version"]) == "1.2.3\n")
        #expect(output(Self.daemon, ["check", "--version"]) == "1.2.3\n")
        let help = output(Self.daemon, ["--help"])
        #expect(help.hasPrefix("OVERVIEW: A daemon.\n\nUSAGE: daemon <subcommand>\n"), "\(help)")
        #expect(help.contains("  run (default)           Run it.\n") && help.contains("  check                   Check it.\n"), "\(help)")
        #expect(Self.cli.help.hasPrefix("OVERVIEW: A client.\n\nExit codes: 0 or 64.\n\nUSAGE: cli <subcommand>"))
        let runHelp = output(Self.daemon, ["help", "run"])
        #expect(runHelp.contains("USAGE: daemon run [--config <config>] [--dev] [--format <format>]"), "\(runHelp)")
        #expect(runHelp.contains("-f, --format <format>") && runHelp.contains("(values: text, json; default: text)"), "\(runHelp)")
        #expect(output(Self.daemon, ["run", "-h"]) == runHelp)
        #expect(usageError(Self.daemon, ["help", "nothing"]).hasPrefix("Error: unknown subcommand 'nothing'"))
    }

    @Test("values: = or the next word, short names, choices; flags take none; a missing value is named")
    func values() {
        #expect(ran(Self.daemon, ["run", "-f", "json"])?.arguments.string("format") == "json")
        #expect(ran(Self.daemon, ["run", "--format=json", "--format", "text"])?.arguments.string("format") == "text")
        #expect(usageError(Self.daemon, ["run", "--format", "xml"]).contains("'xml' is not a value of --format; use one of text, json"))
        #expect(usageError(Self.daemon, ["run", "--dev=yes"]).contains("--dev is a flag and takes no value"))
        #expect(usageError(Self.daemon, ["run", "--config"]).contains("missing value for '--config <config>'"))
        #expect(usageError(Self.daemon, ["run", "--config", "--dev"]).contains("missing value for '--config <config>'"))
        let error = usageError(Self.daemon, ["check", "extra"])
        #expect(error.hasPrefix("Error: unexpected argument 'extra'\nUsage: daemon check [--config <config>]\n"))
        #expect(error.hasSuffix("  See 'daemon check --help' for more information.\n"))
    }

    @Test("completions and the manual's JSON name the tool; an unknown shell is a usage error")
    func completions() {
        let bash = output(Self.daemon, ["--generate-completion-script", "bash"])
        #expect(bash.contains("_daemon()") && bash.contains("complete -F _daemon daemon"), "\(bash)")
        // Right after the name: the subcommands and the default command's options.
        #expect(bash.contains("run check help --version --help --config --dev --format") && bash.contains("run|-*) options="), "\(bash)")
        #expect(output(Self.daemon, ["--generate-completion-script=zsh"]).hasPrefix("#compdef daemon\n"))
        #expect(output(Self.daemon, ["--generate-completion-script", "fish"]).hasPrefix("complete -c daemon -f\n"))
        #expect(usageError(Self.daemon, ["--generate-completion-script", "tcsh"]).contains("takes bash, zsh or fish, not 'tcsh'"))
        let manual = output(Self.daemon, ["--experimental-dump-help"])
        #expect(manual.contains(#""commandName":"daemon""#) && manual.contains(#""defaultSubcommand":"run""#), "\(manual)")
        #expect(!output(Self.cli, ["--experimental-dump-help"]).contains("defaultSubcommand"))
    }
}
