// The command table is CommandSpec.swift; Tool.swift reads a whole command line with it.

/// A usage error: what was wrong with the command line (exit 64, with the command's usage).
public struct UsageError: Error {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// The end of a command with this exit status (its message already printed).
public struct ExitCode: Error {
    public var status: Int32
    public init(_ status: Int32) { self.status = status }
}

/// A command line read against a `CommandSpec`: the options' values and what follows them.
public struct ParsedArguments: Sendable {
    /// What the words asked for.
    enum Outcome {
        case run(ParsedArguments)
        /// `-h` or `--help` among the options.
        case help
        /// `--version` among the options.
        case version
    }

    public let command: CommandSpec
    private var values: [String: [String]] = [:]
    /// The words after the options (`exec`'s command, `doctor`'s arguments).
    public private(set) var trailing: [String] = []

    private init(command: CommandSpec) { self.command = command }

    /// Reads `words` (what follows the subcommand's name); `tool` names the program in errors.
    static func parse(_ words: [String], for command: CommandSpec, tool: String) throws(UsageError) -> Outcome {
        var parsed = ParsedArguments(command: command)
        if case .passthrough = command.trailing {
            parsed.trailing = words
            return .run(parsed)
        }
        var index = 0
        while index < words.count {
            let word = words[index]
            index += 1
            if word == "--" {
                guard case .command = command.trailing else { throw UsageError("unexpected argument '--'") }
                parsed.trailing = Array(words[index...])
                break
            }
            if word == "-h" || word == "--help" { return .help }
            if word == "--version" { return .version }
            guard word.hasPrefix("-"), word.count > 1 else {
                guard case .command = command.trailing else { throw UsageError("unexpected argument '\(word)'") }
                parsed.trailing = Array(words[(index - 1)...])
                break
            }
            // `--name`, `--name=value`, `-o`, `-o=value`.
            // Exactly two dashes for a long name, one for a short one: `---socket` is unknown.
            let body = word.dropFirst(word.hasPrefix("--") ? 2 : 1)
            let equals = body.firstIndex(of: "=")
            let name = String(body[..<(equals ?? body.endIndex)])
            let option = word.hasPrefix("--") ? command.option(long: name) : name.count == 1 ? command.option(short: name.first!) : nil
            guard let option else { throw UsageError("unknown option '\(word.prefix { $0 != "=" })' (see '\(tool) \(command.name) --help')") }
            guard option.value != nil else {
                guard equals == nil else { throw UsageError("--\(option.name) is a flag and takes no value") }
                parsed.values["--" + option.name, default: []].append("")
                continue
            }
            let value: String
            if let equals {
                value = String(body[body.index(after: equals)...])
            } else {
                // The next word is the value, even one starting with `-` (ArgumentParser took `--x -1` so); not another option, though.
                guard index < words.count, !(words[index].hasPrefix("--") && words[index].count > 2) else {
                    throw UsageError("missing value for '\(option.synopsis)'")
                }
                value = words[index]
                index += 1
            }
            if !option.choices.isEmpty, !option.choices.contains(value) {
                throw UsageError("'\(value)' is not a value of --\(option.name); use one of \(option.choices.joined(separator: ", "))")
            }
            parsed.values["--" + option.name, default: []].append(value)
        }
        return .run(parsed)
    }

    /// The value of `--name` (the last one when given several times).
    public func string(_ name: String) -> String? { values["--" + name]?.last }

    /// Every value of a repeatable `--name`, in order.
    public func strings(_ name: String) -> [String] { values["--" + name] ?? [] }

    /// Whether flag `--name` was given.
    public func flag(_ name: String) -> Bool { values["--" + name] != nil }

    /// The value of `--name` as a whole number.
    public func int(_ name: String) throws(UsageError) -> Int? {
        guard let text = string(name) else { return nil }
        guard let value = Int(text) else { throw UsageError("--\(name) must be a whole number, not '\(text)'") }
        return value
    }

    /// The value of `--name` as one of `Choice`'s cases (the spec's `choices` already checked it).
    public func choice<Choice: RawRepresentable<String>>(_ name: String, as _: Choice.Type = Choice.self) -> Choice? {
        string(name).flatMap(Choice.init(rawValue:))
    }
}
