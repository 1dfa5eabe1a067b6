import TokenBrokerProtocol

/// What scripts/package asked swift-argument-parser for, from the same command table:
/// `--generate-completion-script bash|zsh|fish` and `--experimental-dump-help` (the JSON
/// `generate-manual` turns into the manual page).
enum ShellCompletion {
    /// The completion script for `shell`, nil for a shell without one.
    static func script(for shell: String, tool: Tool) -> String? {
        switch shell {
        case "bash": bash(tool)
        case "zsh": zsh(tool)
        case "fish": fish(tool)
        default: nil
        }
    }

    /// The options completed right after the program's name: its default command's, if it has one.
    private static func topLevelWords(_ tool: Tool) -> [String] {
        let fallback = tool.commands.first { $0.name == tool.defaultCommand }
        return tool.commands.map(\.name) + ["help", "--version", "--help"] + (fallback?.options.map { "--\($0.name)" } ?? [])
    }

    private static func bash(_ tool: Tool) -> String {
        let commands = tool.commands
        var values = ""
        var options = ""
        for command in commands {
            let words = command.options.map { "--\($0.name)" } + command.options.compactMap { $0.short.map { "-\($0)" } } + ["--help"]
            // The default command's options also follow the name directly (`tokenbrokerd --config …`).
            let pattern = command.name == tool.defaultCommand ? "\(command.name)|-*" : command.name
            options += "        \(pattern)) options=\"\(words.joined(separator: " "))\" ;;\n"
            for option in command.options where !option.choices.isEmpty {
                let patterns = ["\"\(command.name) --\(option.name)\""] + (option.short.map { ["\"\(command.name) -\($0)\""] } ?? [])
                values +=
                    "        \(patterns.joined(separator: "|"))) COMPREPLY=($(compgen -W \"\(option.choices.joined(separator: " "))\" -- \"$cur\")); return ;;\n"
            }
        }
        return """
            _\(tool.name)() {
                local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" sub="${COMP_WORDS[1]}" options=""
                if [[ $COMP_CWORD -eq 1 ]]; then
                    COMPREPLY=($(compgen -W "\(topLevelWords(tool).joined(separator: " "))" -- "$cur"))
                    return
                fi
                case "$sub $prev" in
            \(values)    esac
                case "$sub" in
            \(options)    esac
                if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "$options" -- "$cur")); else COMPREPLY=($(compgen -f -- "$cur")); fi
            }
            complete -F _\(tool.name) \(tool.name)

            """
    }

    /// Text safe inside a zsh `_arguments` spec or `_describe` item.
    private static func zshQuoted(_ text: String) -> String {
        String(text.map { "[]:'\\".contains($0) ? " " : $0 })
    }

    private static func zsh(_ tool: Tool) -> String {
        let commands = tool.commands
        var cases = ""
        for command in commands {
            let specs = command.options.map { option in
                let values =
                    option.choices.isEmpty ? ":\(option.value ?? ""):_files" : ":\(option.value ?? ""):(\(option.choices.joined(separator: " ")))"
                return "'--\(option.name)[\(zshQuoted(option.help))]\(option.value == nil ? "" : values)'"
            }
            cases += "        \(command.name)) _arguments \(specs.joined(separator: " ")) '*:file:_files' ;;\n"
        }
        let described = commands.map { "'\($0.name):\(zshQuoted($0.abstract))'" }.joined(separator: " ")
        return """
            #compdef \(tool.name)
            _\(tool.name)() {
                local -a subcommands
                subcommands=(\(described))
                if (( CURRENT == 2 )); then _describe 'subcommand' subcommands; return; fi
                local sub=$words[2]
                shift words; (( CURRENT-- ))
                case $sub in
            \(cases)    esac
            }
            _\(tool.name) "$@"

            """
    }

    private static func fish(_ tool: Tool) -> String {
        let commands = tool.commands
        let name = tool.name
        func quoted(_ text: String) -> String { "'" + text.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "\\'") + "'" }
        var lines = ["complete -c \(name) -f"]
        for command in commands {
            lines.append("complete -c \(name) -n __fish_use_subcommand -a \(command.name) -d \(quoted(command.abstract))")
            for option in command.options {
                var line = "complete -c \(name) -n '__fish_seen_subcommand_from \(command.name)' -l \(option.name)"
                if let short = option.short { line += " -s \(short)" }
                if option.value != nil { line += option.choices.isEmpty ? " -r -F" : " -x -a \(quoted(option.choices.joined(separator: " ")))" }
                lines.append(line + " -d \(quoted(option.help))")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// ArgumentParser's `ToolInfoV0` for the command tree (what `--experimental-dump-help` printed).
    static func toolInfo(_ tool: Tool) -> String {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("serializationVersion", 0)
        writer.key("command")
        writer.beginObject()
        writer.field("commandName", tool.name)
        writer.field("abstract", tool.abstract)
        writer.field("discussion", tool.discussion)
        if let defaultCommand = tool.defaultCommand { writer.field("defaultSubcommand", defaultCommand) }
        writer.field("shouldDisplay", true)
        writer.beginArray("arguments")
        argument(&writer, OptionSpec.flag("version", help: "Show the version."))
        writer.endArray()
        writer.beginArray("subcommands")
        for command in tool.commands {
            writer.separator()
            writer.beginObject()
            writer.field("commandName", command.name)
            writer.beginArray("superCommands")
            writer.element(tool.name)
            writer.endArray()
            writer.field("abstract", command.abstract)
            if !command.discussion.isEmpty { writer.field("discussion", command.discussion) }
            writer.field("shouldDisplay", true)
            writer.beginArray("arguments")
            for option in command.options { argument(&writer, option) }
            switch command.trailing {
            case .none: break
            case .command(let help), .passthrough(let help):
                writer.separator()
                writer.beginObject()
                writer.field("kind", "positional")
                writer.field("shouldDisplay", true)
                writer.field("isOptional", true)
                writer.field("isRepeating", true)
                writer.field("parsingStrategy", "allRemainingInput")
                writer.field("valueName", "arguments")
                writer.field("abstract", help)
                writer.endObject()
            }
            writer.endArray()
            writer.endObject()
        }
        writer.endArray()
        writer.endObject()
        writer.endObject()
        return writer.text
    }

    private static func argument(_ writer: inout JSONWriter, _ option: OptionSpec) {
        writer.separator()
        writer.beginObject()
        writer.field("kind", option.value == nil ? "flag" : "option")
        writer.field("shouldDisplay", true)
        writer.field("isOptional", true)
        writer.field("isRepeating", option.repeatable)
        writer.field("parsingStrategy", "default")
        writer.beginArray("names")
        name(&writer, "long", option.name)
        if let short = option.short { name(&writer, "short", String(short)) }
        writer.endArray()
        writer.key("preferredName")
        name(&writer, "long", option.name, separated: false)
        writer.field("valueName", option.value ?? option.name)
        writer.field("defaultValue", option.defaultValue)
        if !option.choices.isEmpty {
            writer.beginArray("allValues")
            for choice in option.choices { writer.element(choice) }
            writer.endArray()
        }
        writer.field("abstract", option.help)
        writer.endObject()
    }

    private static func name(_ writer: inout JSONWriter, _ kind: String, _ name: String, separated: Bool = true) {
        if separated { writer.separator() }
        writer.beginObject()
        writer.field("kind", kind)
        writer.field("name", name)
        writer.endObject()
    }
}
