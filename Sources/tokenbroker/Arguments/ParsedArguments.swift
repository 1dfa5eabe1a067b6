// Hand-written on purpose: swift-argument-parser imports FoundationEssentials, ~5 MiB of the
// per-pod CLI's 13 (docs/benchmarks.md, sixth round); the command table is CommandSpec.swift.

/// A usage error: what was wrong with the command line (exit 64, with the command's usage).
struct UsageError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// The end of a command with this exit status (its message already printed).
struct ExitCode: Error {
    var status: Int32
    init(_ status: Int32) { self.status = status }
}

/// A command line read against a `CommandSpec`: the options' values and what follows them.
struct ParsedArguments {
    /// What the words asked for.
    enum Outcome {
        case run(ParsedArguments)
        /// `-h` or `--help` among the options.
        case help
        /// `--version` among the options.
        case version
    }

    let command: CommandSpec
    private var values: [String: [String]] = [:]
    /// The words after the options (`exec`'s command, `doctor`'s arguments).
    private(set) var trailing: [String] = []

    private init(command: CommandSpec) { self.command = command }

    /// Reads `words` (what follows the subcommand's name).
    static func parse(_ words: [String], for command: CommandSpec) throws(UsageError) -> Outcome {
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
            guard let option else { throw UsageError("unknown option '\(word.prefix { $0 != "=" })' (see 'tokenbroker \(command.name) --help')") }
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
    func string(_ name: String) -> String? { values["--" + name]?.last }

    /// Every value of a repeatable `--name`, in order.
    func strings(_ name: String) -> [String] { values["--" + name] ?? [] }

    /// Whether flag `--name` was given.
    func flag(_ name: String) -> Bool { values["--" + name] != nil }

    /// The value of `--name` as a whole number.
    func int(_ name: String) throws(UsageError) -> Int? {
        guard let text = string(name) else { return nil }
        guard let value = Int(text) else { throw UsageError("--\(name) must be a whole number, not '\(text)'") }
        return value
    }

    /// The value of `--name` as one of `Choice`'s cases (the spec's `choices` already checked it).
    func choice<Choice: RawRepresentable<String>>(_ name: String, as _: Choice.Type = Choice.self) -> Choice? {
        string(name).flatMap(Choice.init(rawValue:))
    }
}
