/// A program's command table (`tokenbroker`, `tokenbrokerd`): its subcommands, and what a
/// command line asks of them — help, the version, completions, or a subcommand to run.
public struct Tool: Sendable {
    /// What a command line asks for.
    public enum Request {
        /// Run `command` with these arguments.
        case run(CommandSpec, ParsedArguments)
        /// Print this on standard output and exit 0 (help, the version, completions, the manual's JSON).
        case output(String)
        /// Print this on standard error and exit 64.
        case usageError(String)
    }

    public var name: String
    public var abstract: String
    public var discussion: String
    public var version: String
    public var commands: [CommandSpec]
    /// The subcommand a command line without one runs (`tokenbrokerd --config F` is
    /// `tokenbrokerd run --config F`); nil: a subcommand is required, and none prints help.
    public var defaultCommand: String?

    public init(
        name: String, abstract: String, discussion: String = "", version: String, commands: [CommandSpec], defaultCommand: String? = nil
    ) {
        self.name = name
        self.abstract = abstract
        self.discussion = discussion
        self.version = version
        self.commands = commands
        self.defaultCommand = defaultCommand
    }

    /// Reads `words`, the command line without the program's name.
    public func read(_ words: [String]) -> Request {
        let fallback = defaultCommand.flatMap(command(named:))
        guard let first = words.first else { return fallback.map { parse([], for: $0) } ?? .output(help + "\n") }
        switch first {
        case "-h", "--help": return .output(help + "\n")
        case "--version": return .output(version + "\n")
        // For scripts/package: the manual page's JSON and shell completions, from the table.
        case "--experimental-dump-help": return .output(ShellCompletion.toolInfo(self) + "\n")
        case "help":
            guard words.count > 1 else { return .output(help + "\n") }
            guard let command = command(named: words[1]) else { return unknown(words[1]) }
            return .output(command.help(tool: name) + "\n")
        default: break
        }
        if first == "--generate-completion-script" || first.hasPrefix("--generate-completion-script=") {
            let shell = first.contains("=") ? String(first.drop { $0 != "=" }.dropFirst()) : words.dropFirst().first ?? ""
            guard let script = ShellCompletion.script(for: shell, tool: self) else {
                return .usageError("Error: --generate-completion-script takes bash, zsh or fish, not '\(shell)'\n")
            }
            return .output(script)
        }
        if let command = command(named: first) { return parse(Array(words.dropFirst()), for: command) }
        if let fallback, first.hasPrefix("-") { return parse(words, for: fallback) }
        return unknown(first)
    }

    /// The text of a usage error that `command`'s own checks found.
    public func usageError(_ message: String, command: CommandSpec) -> String {
        "Error: \(message)\nUsage: \(command.usage(tool: name))\n  See '\(name) \(command.name) --help' for more information.\n"
    }

    /// The text `NAME --help` prints (without the last newline).
    public var help: String {
        let paragraph = discussion.isEmpty ? "" : HelpText.wrap(discussion, indent: 0) + "\n\n"
        let rows = commands.map { HelpText.row($0.name + ($0.name == defaultCommand ? " (default)" : ""), $0.abstract) }.joined()
        return """
            OVERVIEW: \(abstract)

            \(paragraph)USAGE: \(name) <subcommand>

            OPTIONS:
            \(HelpText.row("--version", "Show the version."))\(HelpText.row("-h, --help", "Show help information."))
            SUBCOMMANDS:
            \(rows)
              See '\(name) help <subcommand>' for detailed help.
            """
    }

    private func command(named word: String) -> CommandSpec? { commands.first { $0.name == word } }

    private func parse(_ words: [String], for command: CommandSpec) -> Request {
        do {
            switch try ParsedArguments.parse(words, for: command, tool: name) {
            case .help: return .output(command.help(tool: name) + "\n")
            case .version: return .output(version + "\n")
            case .run(let arguments): return .run(command, arguments)
            }
        } catch {
            return .usageError(usageError(error.message, command: command))
        }
    }

    private func unknown(_ word: String) -> Request {
        let what = word.hasPrefix("-") ? "unknown option '\(word)'" : "unknown subcommand '\(word)'"
        return .usageError(
            "Error: \(what); the subcommands are \(commands.map(\.name).joined(separator: ", "))\n"
                + "Usage: \(name) <subcommand>\n  See '\(name) --help' for more information.\n")
    }
}
