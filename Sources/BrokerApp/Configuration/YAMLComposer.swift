internal import CYAML

/// Why the text is not YAML, on one line: where, the problem, and where its cause
/// started (libyaml's own words, as Yams reported them before).
struct YAMLSyntaxError: Error, Sendable {
    var message: String
}

/// Composes YAML text into a `Node` tree with libyaml's event parser (Debian's libyaml,
/// the same parser Yams bundled), as Yams' `compose(yaml:)` did with its basic resolver:
/// one document at most, aliases resolved, duplicate keys refused, no implicit types.
enum YAMLComposer {
    /// Deeper nesting is refused rather than recursed into (no configuration needs 10 levels).
    static let maxDepth = 256

    /// The document's root, or nil when the text holds no document.
    static func compose(_ text: String) throws(YAMLSyntaxError) -> Node? {
        // A UTF-8 byte order mark (Windows editors write one) is no content: with the encoding
        // set below, libyaml would read it as text and refuse the document.
        let text = text.hasPrefix("\u{FEFF}") ? String(text.unicodeScalars.dropFirst()) : text
        // libyaml keeps a pointer to the parser in the parser (its input handler's data): one
        // allocation whose address every call shares, not an inout `&parser` valid per call.
        let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        parser.initialize(to: yaml_parser_t())
        defer {
            parser.deinitialize(count: 1)
            parser.deallocate()
        }
        guard yaml_parser_initialize(parser) == 1 else { throw YAMLSyntaxError(message: "out of memory") }
        defer { yaml_parser_delete(parser) }
        // A terminating zero so that even empty text has an address; it is not part of the input.
        let bytes = Array(text.utf8) + [0]
        return try bytes.withUnsafeBufferPointer { buffer throws(YAMLSyntaxError) -> Node? in
            yaml_parser_set_input_string(parser, buffer.baseAddress, buffer.count - 1)
            yaml_parser_set_encoding(parser, YAML_UTF8_ENCODING)
            var composer = Composer(parser: parser, text: text)
            return try composer.singleRoot()
        }
    }
}

/// One libyaml event, copied out so that the event can be freed at once.
private struct Event {
    var type: yaml_event_type_t
    var mark: Node.Mark
    var anchor: String?
    var value = ""
    var style = Node.Scalar.Style.plain
}

private struct Composer {
    let parser: UnsafeMutablePointer<yaml_parser_t>
    let text: String
    var anchors: [String: Node] = [:]

    mutating func singleRoot() throws(YAMLSyntaxError) -> Node? {
        _ = try next()  // stream start
        guard try next().type != YAML_STREAM_END_EVENT else { return nil }
        let root = try load(try next(), depth: 0)
        _ = try next()  // document end
        let after = try next()
        guard after.type == YAML_STREAM_END_EVENT else {
            throw Self.error(
                "but found another document", at: after.mark, cause: ("expected a single document in the stream", Node.Mark(line: 1, column: 1)))
        }
        return root
    }

    private mutating func load(_ event: Event, depth: Int) throws(YAMLSyntaxError) -> Node {
        guard depth < YAMLComposer.maxDepth else { throw Self.error("nested more than \(YAMLComposer.maxDepth) levels deep", at: event.mark) }
        let node: Node
        switch event.type {
        case YAML_ALIAS_EVENT:
            guard let anchor = event.anchor, let target = anchors[anchor] else { throw Self.error("found undefined alias", at: event.mark) }
            return target
        case YAML_SCALAR_EVENT:
            node = .scalar(.init(string: event.value, style: event.style, mark: event.mark))
        case YAML_SEQUENCE_START_EVENT:
            var nodes: [Node] = []
            var item = try next()
            while item.type != YAML_SEQUENCE_END_EVENT {
                nodes.append(try load(item, depth: depth + 1))
                item = try next()
            }
            node = .sequence(.init(nodes: nodes, mark: event.mark))
        default:  // mapping start: the parser produces nothing else here
            var pairs: [(key: Node, value: Node)] = []
            var item = try next()
            while item.type != YAML_MAPPING_END_EVENT {
                let key = try load(item, depth: depth + 1)
                let value = try load(try next(), depth: depth + 1)
                pairs.append((key, value))
                item = try next()
            }
            try Self.checkDuplicates(pairs.map(\.key))
            node = .mapping(.init(pairs: pairs, mark: event.mark))
        }
        if let anchor = event.anchor { anchors[anchor] = node }
        return node
    }

    /// Two equal scalar keys in one mapping: YAML forbids it, and one would silently win.
    private static func checkDuplicates(_ keys: [Node]) throws(YAMLSyntaxError) {
        var first: [String: Node.Mark] = [:]
        var duplicates: Set<String> = []
        for key in keys {
            guard let scalar = key.scalar else { continue }
            if first[scalar.string] == nil { first[scalar.string] = scalar.mark } else { duplicates.insert(scalar.string) }
        }
        guard let smallest = duplicates.min(), let mark = first[smallest] else { return }
        let names = duplicates.sorted().map { "'\($0)'" }.joined(separator: ", ")
        throw error("duplicate key\(duplicates.count == 1 ? "" : "s") \(names)", at: mark)
    }

    private func next() throws(YAMLSyntaxError) -> Event {
        var raw = yaml_event_t()
        guard yaml_parser_parse(parser, &raw) == 1 else { throw parserError() }
        defer { yaml_event_delete(&raw) }
        var event = Event(type: raw.type, mark: Node.Mark(line: raw.start_mark.line + 1, column: raw.start_mark.column + 1))
        func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? { pointer.map { String(cString: $0) } }
        switch raw.type {
        case YAML_SCALAR_EVENT:
            let scalar = raw.data.scalar
            event.anchor = string(scalar.anchor)
            event.value = String(decoding: UnsafeBufferPointer(start: scalar.value, count: scalar.length), as: UTF8.self)
            switch scalar.style {
            case YAML_PLAIN_SCALAR_STYLE: event.style = .plain
            case YAML_LITERAL_SCALAR_STYLE, YAML_FOLDED_SCALAR_STYLE: event.style = .block
            default: event.style = .quoted
            }
        case YAML_ALIAS_EVENT: event.anchor = string(raw.data.alias.anchor)
        case YAML_SEQUENCE_START_EVENT: event.anchor = string(raw.data.sequence_start.anchor)
        case YAML_MAPPING_START_EVENT: event.anchor = string(raw.data.mapping_start.anchor)
        default: break
        }
        return event
    }

    /// libyaml's error, worded as Yams' was: "line L, column C: problem (context at line l, column c)".
    private func parserError() -> YAMLSyntaxError {
        let state = parser.pointee
        let problem = state.problem.map { String(cString: $0) } ?? "syntax error"
        func mark(_ mark: yaml_mark_t) -> Node.Mark { Node.Mark(line: mark.line + 1, column: mark.column + 1) }
        switch state.error {
        case YAML_MEMORY_ERROR:
            return YAMLSyntaxError(message: "out of memory")
        case YAML_READER_ERROR:
            // The offset in characters, as Yams gave it (nil inside a character).
            let utf8 = text.utf8
            let offset = utf8.index(utf8.startIndex, offsetBy: state.problem_offset, limitedBy: utf8.endIndex)?
                .samePosition(in: text).map { text.distance(from: text.startIndex, to: $0) }
            return YAMLSyntaxError(message: "\(problem)\(offset.map { " at byte \($0)" } ?? "")")
        default:
            let cause = state.context.map { (String(cString: $0), mark(state.context_mark)) }
            return Self.error(problem, at: mark(state.problem_mark), cause: cause)
        }
    }

    private static func error(_ problem: String, at mark: Node.Mark, cause: (String, Node.Mark)? = nil) -> YAMLSyntaxError {
        func at(_ mark: Node.Mark) -> String { "line \(mark.line), column \(mark.column)" }
        return YAMLSyntaxError(message: "\(at(mark)): \(problem)\(cause.map { " (\($0.0) at \(at($0.1)))" } ?? "")")
    }
}
