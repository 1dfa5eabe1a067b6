/// Walks a YAML node tree, collecting every problem with its path instead of
/// stopping at the first.
struct NodeReader {
    private(set) var issues: [ConfigurationError.Issue] = []

    mutating func report(_ path: String, _ message: String, _ node: Node? = nil) {
        issues.append(.init(path: path, message: message, line: node?.mark.map { $0.line }))
    }

    /// The node unless it is absent or YAML null (`~`, `null`, an empty value): both mean "not set".
    static func present(_ node: Node?) -> Node? {
        guard let node, node.null == nil else { return nil }
        return node
    }

    /// Issues in file order (those without a line last), as `ConfigurationError` promises.
    var issuesInFileOrder: [ConfigurationError.Issue] {
        issues.enumerated().sorted { a, b in
            switch (a.element.line, b.element.line) {
            case let (x?, y?) where x != y: x < y
            case (nil, _?): false
            case (_?, nil): true
            default: a.offset < b.offset
            }
        }.map(\.element)
    }

    /// A mapping with string keys; unknown keys are reported (a typo must not be silently ignored).
    mutating func mapping(_ node: Node?, at path: String, keys allowed: Set<String>) -> [String: Node]? {
        guard let node = Self.present(node) else { return nil }
        guard let mapping = node.mapping else {
            report(path, "must be a mapping (key: value)", node)
            return nil
        }
        var result: [String: Node] = [:]
        for (keyNode, value) in mapping {
            guard let key = keyNode.string else {
                report(path, "keys must be strings", keyNode)
                continue
            }
            let child = path.isEmpty ? key : "\(path).\(key)"
            if !allowed.contains(key) {
                report(child, "unknown field; expected one of \(allowed.sorted().joined(separator: ", "))", keyNode)
            } else {
                result[key] = value
            }
        }
        return result
    }

    /// A `{ KIND: SETTINGS }` mapping that names exactly one of `kinds` (an identity's
    /// source, its exchange): the kind and its settings, or nil once what is wrong is
    /// reported ("must name exactly one `what`: a, b or c").
    mutating func oneOf(_ node: Node?, at path: String, kinds: [String], naming what: String) -> (kind: String, value: Node)? {
        guard let fields = mapping(node, at: path, keys: Set(kinds)) else { return nil }
        guard fields.count == 1, let (kind, value) = fields.first else {
            report(path, "must name exactly one \(what): \(kinds.dropLast().joined(separator: ", ")) or \(kinds.last ?? "")", node)
            return nil
        }
        return (kind, value)
    }

    mutating func sequence(_ node: Node?, at path: String) -> [Node]? {
        guard let node = Self.present(node) else { return nil }
        guard let sequence = node.sequence else {
            report(path, "must be a list", node)
            return nil
        }
        return Array(sequence)
    }

    mutating func string(_ node: Node?, at path: String) -> String? {
        guard let node = Self.present(node) else { return nil }
        guard let scalar = node.scalar else {
            report(path, "must be a string", node)
            return nil
        }
        guard !scalar.string.isEmpty else {
            report(path, "must not be empty", node)
            return nil
        }
        return scalar.string
    }

    mutating func requiredString(_ node: Node?, at path: String, parent: Node?) -> String? {
        guard Self.present(node) != nil else {
            report(path, "is required", parent)
            return nil
        }
        return string(node, at: path)
    }

    mutating func int(_ node: Node?, at path: String, in range: ClosedRange<Int>) -> Int? {
        guard let node = Self.present(node) else { return nil }
        guard let text = node.scalar?.string, let value = Int(text) else {
            report(path, "must be an integer", node)
            return nil
        }
        guard range.contains(value) else {
            report(path, "must be between \(range.lowerBound) and \(range.upperBound), got \(value)", node)
            return nil
        }
        return value
    }

    mutating func bool(_ node: Node?, at path: String) -> Bool? {
        guard let node = Self.present(node) else { return nil }
        switch node.scalar?.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            report(path, "must be true or false", node)
            return nil
        }
    }
}

/// Log level names accepted in configuration and on the command line.
public enum LogLevelName {
    /// All names, most verbose first.
    public static let all = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Whether `name` is a level.
    public static func parse(_ name: String) -> String? {
        all.contains(name.lowercased()) ? name.lowercased() : nil
    }
}
