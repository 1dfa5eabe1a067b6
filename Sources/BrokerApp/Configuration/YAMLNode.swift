/// A YAML node as the configuration readers see it: libyaml composes it
/// (`YAMLComposer`); nothing resolves implicit types, each reader parses the scalar's
/// text itself. The shape is the one Yams' `Node` gave the readers (same member names),
/// so that Yams — which imports all of Foundation and with it ICU's 34 MB data table —
/// is not linked into the daemon.
indirect enum Node: Sendable {
    case scalar(Scalar)
    case mapping(Mapping)
    case sequence(Sequence)

    /// Where a node starts in the text, 1-based.
    struct Mark: Sendable, Equatable {
        var line: Int
        var column: Int
    }

    struct Scalar: Sendable {
        /// How the scalar was written: only a plain scalar can be YAML null.
        enum Style: Sendable { case plain, quoted, block }
        var string: String
        var style: Style
        var mark: Mark
    }

    /// Key–value pairs in file order.
    struct Mapping: Sendable, Swift.Sequence {
        var pairs: [(key: Node, value: Node)]
        var mark: Mark

        func makeIterator() -> IndexingIterator<[(key: Node, value: Node)]> { pairs.makeIterator() }
        var count: Int { pairs.count }
        var isEmpty: Bool { pairs.isEmpty }
        var keys: [Node] { pairs.map(\.key) }

        /// The value of the (last) key whose text is `key`.
        subscript(key: String) -> Node? {
            pairs.last { $0.key.string == key }?.value
        }
    }

    struct Sequence: Sendable, Swift.Sequence {
        var nodes: [Node]
        var mark: Mark

        func makeIterator() -> IndexingIterator<[Node]> { nodes.makeIterator() }
    }

    /// YAML null: a plain `~`, `null`, `Null`, `NULL` or nothing at all (quoted `''` is a string).
    struct Null: Sendable {}

    var scalar: Scalar? {
        if case .scalar(let scalar) = self { scalar } else { nil }
    }

    var mapping: Mapping? {
        if case .mapping(let mapping) = self { mapping } else { nil }
    }

    var sequence: Sequence? {
        if case .sequence(let sequence) = self { sequence } else { nil }
    }

    /// A scalar's text.
    var string: String? { scalar?.string }

    var null: Null? {
        guard let scalar, scalar.style == .plain else { return nil }
        switch scalar.string {
        case "", "~", "null", "Null", "NULL": return Null()
        default: return nil
        }
    }

    var mark: Mark? {
        switch self {
        case .scalar(let scalar): scalar.mark
        case .mapping(let mapping): mapping.mark
        case .sequence(let sequence): sequence.mark
        }
    }
}
