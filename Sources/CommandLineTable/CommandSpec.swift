// Hand-written instead of swift-argument-parser: ArgumentParser imports FoundationEssentials,
// and the two were 7 of the CLI's 13.3 MiB stripped — the CLI runs in every pod as
// `tokenbroker relay` (docs/benchmarks.md, sixth round) — and its reflection cost the idle
// daemon ~1 MiB (eighth round). A tool's options are a table; the parser, the help text, the
// usage errors, the shell completions and the manual page's JSON all come from it.

/// One option of a command: `--name VALUE` (`--name=VALUE`, `-s VALUE`), or a flag.
public struct OptionSpec: Sendable {
    /// The long name without dashes (`scope`).
    public var name: String
    /// The one-letter name (`o` for `-o`), if any.
    public var short: Character?
    /// The value's placeholder in help (`scope` → `<scope>`); nil for a flag.
    public var value: String?
    /// One sentence for `--help`.
    public var help: String
    /// The default, shown in help.
    public var defaultValue: String?
    /// The only values accepted (checked by `ParsedArguments.parse`), shown in help.
    public var choices: [String] = []
    /// Whether the option may be given several times, all values kept (else the last one wins).
    public var repeatable = false

    public static func option(
        _ name: String, short: Character? = nil, help: String, default defaultValue: String? = nil, choices: [String] = [], repeatable: Bool = false
    ) -> OptionSpec {
        OptionSpec(name: name, short: short, value: name, help: help, defaultValue: defaultValue, choices: choices, repeatable: repeatable)
    }

    public static func flag(_ name: String, help: String) -> OptionSpec {
        OptionSpec(name: name, short: nil, value: nil, help: help)
    }

    /// `--scope <scope>`, `-o, --output <output>`.
    public var synopsis: String {
        (short.map { "-\($0), " } ?? "") + "--\(name)" + (value.map { " <\($0)>" } ?? "")
    }
}

/// A subcommand: its options, what follows them, and its help.
public struct CommandSpec: Sendable {
    /// What comes after the options.
    public enum Trailing: Sendable {
        /// Nothing: a word that is not an option is an error.
        case none
        /// A command to run (`exec -- CMD ARG…`): the first word that is not an option, or everything after `--`.
        case command(help: String)
        /// Every argument, untouched (`doctor`, which hands them to `tokenbroker-doctor`).
        case passthrough(help: String)
    }

    public var name: String
    public var abstract: String
    public var discussion: String
    public var options: [OptionSpec]
    public var trailing: Trailing

    public init(name: String, abstract: String, discussion: String = "", options: [OptionSpec] = [], trailing: Trailing = .none) {
        self.name = name
        self.abstract = abstract
        self.discussion = discussion
        self.options = options
        self.trailing = trailing
    }

    /// The option named `--name` or `-name`.
    func option(long name: String) -> OptionSpec? { options.first { $0.name == name } }
    func option(short letter: Character) -> OptionSpec? { options.first { $0.short == letter } }

    /// `TOOL get [--scope <scope>] …`.
    func usage(tool: String) -> String {
        var words = [tool, name] + options.map { "[--\($0.name)\($0.value.map { " <\($0)>" } ?? "")]" }
        switch trailing {
        case .none: break
        case .command: words.append("[-- <command> ...]")
        case .passthrough: words.append("[<arguments> ...]")
        }
        return words.joined(separator: " ")
    }

    /// The text `TOOL NAME --help` prints.
    func help(tool: String) -> String {
        var text = "OVERVIEW: \(abstract)\n\n"
        if !discussion.isEmpty { text += HelpText.wrap(discussion, indent: 0) + "\n\n" }
        text += "USAGE: \(usage(tool: tool))\n\n"
        switch trailing {
        case .none: break
        case .command(let help): text += "ARGUMENTS:\n" + HelpText.row("<command>", help) + "\n"
        case .passthrough(let help): text += "ARGUMENTS:\n" + HelpText.row("<arguments>", help) + "\n"
        }
        text += "OPTIONS:\n"
        for option in options {
            var help = option.help
            if !option.choices.isEmpty {
                help += " (values: \(option.choices.joined(separator: ", "))\(option.defaultValue.map { "; default: \($0)" } ?? ""))"
            } else if let value = option.defaultValue {
                help += " (default: \(value))"
            }
            text += HelpText.row(option.synopsis, help)
        }
        return text + HelpText.row("--version", "Show the version.") + HelpText.row("-h, --help", "Show help information.")
    }
}

/// Help laid out as ArgumentParser did: names in a 26-column gutter, lines shorter than 80 columns.
public enum HelpText {
    static let width = 80
    static let gutter = 26

    /// `  --name <name>           Text…`, the text on the next line when the name is too long.
    public static func row(_ name: String, _ help: String) -> String {
        let lead = "  " + name
        let body = wrap(help, indent: gutter)
        let bodyText = body.dropFirst(gutter)
        if lead.count < gutter { return lead + String(repeating: " ", count: gutter - lead.count) + bodyText + "\n" }
        return lead + "\n" + body + "\n"
    }

    /// `text` in lines of at most `width` columns, each indented by `indent` spaces; a newline in `text` starts a new line.
    public static func wrap(_ text: String, indent: Int) -> String {
        let pad = String(repeating: " ", count: indent)
        var lines: [String] = []
        for paragraph in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = ""
            for word in paragraph.split(separator: " ") {
                if !line.isEmpty, indent + line.count + 1 + word.count >= width {
                    lines.append(pad + line)
                    line = ""
                }
                line += (line.isEmpty ? "" : " ") + word
            }
            lines.append(pad + line)
        }
        return lines.joined(separator: "\n")
    }
}
