// Hand-written: XMLParser on Linux is FoundationXML (0.6 MB) plus libxml2 (1.7 MB, shared) for two response shapes.
/// A small, tolerant XML reader for the fixed, flat documents AWS STS answers with.
///
/// Why not `XMLParser`: on Linux it lives in FoundationXML, which links libxml2 into the
/// daemon for two response shapes of a dozen elements. This reader takes elements, text,
/// character and entity references, CDATA, comments and processing instructions; it refuses
/// a DOCTYPE (no entity expansion, so no billion-laughs or external entities), mismatched
/// tags, and nesting deeper than `maximumDepth`. Namespace prefixes are dropped from names;
/// attributes are skipped.
struct STSXMLElement: Sendable, Equatable {
    /// The local name (without a namespace prefix).
    var name: String
    /// Child elements in document order.
    var children: [STSXMLElement]
    /// Concatenated character data directly inside this element.
    var text: String

    /// The first child named `name`.
    func child(_ name: String) -> STSXMLElement? {
        children.first { $0.name == name }
    }

    /// The element at `path` below this one (`["Credentials", "AccessKeyId"]`).
    func find(_ path: [String]) -> STSXMLElement? {
        var current = self
        for name in path {
            guard let next = current.child(name) else { return nil }
            current = next
        }
        return current
    }

    /// The trimmed text at `path`, nil when the element is absent or empty.
    func text(at path: [String]) -> String? {
        guard let text = find(path)?.text.trimmingWhitespace(), !text.isEmpty else { return nil }
        return text
    }

    static let maximumDepth = 16

    /// The root element of `bytes`, or nil when they are not a well-formed document this reader accepts.
    static func parse(_ bytes: [UInt8]) -> STSXMLElement? {
        var reader = Reader(bytes: bytes)
        return reader.document()
    }

    private struct Reader {
        let bytes: [UInt8]
        var index = 0

        init(bytes: [UInt8]) {
            self.bytes = bytes
            // A UTF-8 byte order mark.
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }
        }

        mutating func document() -> STSXMLElement? {
            var stack: [STSXMLElement] = []
            var root: STSXMLElement?
            while index < bytes.count {
                if bytes[index] == UInt8(ascii: "<") {
                    if starts(with: "<?") {
                        guard skip(past: "?>") else { return nil }
                    } else if starts(with: "<!--") {
                        guard skip(past: "-->") else { return nil }
                    } else if starts(with: "<![CDATA[") {
                        guard !stack.isEmpty else { return nil }
                        let start = index + 9
                        guard skip(past: "]]>") else { return nil }
                        stack[stack.count - 1].text += String(decoding: bytes[start..<(index - 3)], as: UTF8.self)
                    } else if starts(with: "<!") {
                        return nil  // DOCTYPE and other declarations: never expanded, refused.
                    } else if starts(with: "</") {
                        index += 2
                        guard let name = name(), skipSpace(), consume(">"), let open = stack.popLast(), open.name == name else {
                            return nil
                        }
                        if stack.isEmpty {
                            guard root == nil else { return nil }
                            root = open
                        } else {
                            stack[stack.count - 1].children.append(open)
                        }
                    } else {
                        index += 1
                        guard let name = name(), let selfClosing = skipAttributes() else { return nil }
                        let element = STSXMLElement(name: name, children: [], text: "")
                        if selfClosing {
                            if stack.isEmpty {
                                guard root == nil else { return nil }
                                root = element
                            } else {
                                stack[stack.count - 1].children.append(element)
                            }
                        } else {
                            guard root == nil, stack.count < STSXMLElement.maximumDepth else { return nil }
                            stack.append(element)
                        }
                    }
                } else {
                    let start = index
                    while index < bytes.count, bytes[index] != UInt8(ascii: "<") { index += 1 }
                    let raw = String(decoding: bytes[start..<index], as: UTF8.self)
                    if stack.isEmpty {
                        // Only whitespace may stand outside the root element.
                        guard raw.allSatisfy(\.isWhitespace) else { return nil }
                    } else {
                        guard let decoded = Self.decodeReferences(raw) else { return nil }
                        stack[stack.count - 1].text += decoded
                    }
                }
            }
            return stack.isEmpty ? root : nil
        }

        /// A tag name; a `prefix:` is dropped.
        mutating func name() -> String? {
            let start = index
            while index < bytes.count {
                let b = bytes[index]
                if b == UInt8(ascii: ">") || b == UInt8(ascii: "/") || b == UInt8(ascii: " ") || b == UInt8(ascii: "\t")
                    || b == UInt8(ascii: "\n") || b == UInt8(ascii: "\r") || b == UInt8(ascii: "<") || b == UInt8(ascii: "=")
                {
                    break
                }
                index += 1
            }
            guard index > start else { return nil }
            let full = String(decoding: bytes[start..<index], as: UTF8.self)
            let local = full.split(separator: ":", omittingEmptySubsequences: false).last.map(String.init) ?? full
            return local.isEmpty ? nil : local
        }

        /// Skips attributes up to `>` or `/>`; returns whether the tag closed itself.
        mutating func skipAttributes() -> Bool? {
            var quote: UInt8?
            while index < bytes.count {
                let b = bytes[index]
                if let q = quote {
                    if b == q { quote = nil }
                } else if b == UInt8(ascii: "\"") || b == UInt8(ascii: "'") {
                    quote = b
                } else if b == UInt8(ascii: "<") {
                    return nil
                } else if b == UInt8(ascii: ">") {
                    index += 1
                    return false
                } else if b == UInt8(ascii: "/"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: ">") {
                    index += 2
                    return true
                }
                index += 1
            }
            return nil
        }

        mutating func skipSpace() -> Bool {
            while index < bytes.count, [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r")].contains(bytes[index]) {
                index += 1
            }
            return true
        }

        mutating func consume(_ literal: String) -> Bool {
            guard starts(with: literal) else { return false }
            index += literal.utf8.count
            return true
        }

        func starts(with literal: String) -> Bool {
            bytes[index...].starts(with: literal.utf8)
        }

        /// Moves past the next `terminator`; false when there is none.
        mutating func skip(past terminator: String) -> Bool {
            let pattern = Array(terminator.utf8)
            while index + pattern.count <= bytes.count {
                if bytes[index..<(index + pattern.count)].elementsEqual(pattern) {
                    index += pattern.count
                    return true
                }
                index += 1
            }
            return false
        }

        /// Replaces the five predefined entities and numeric character references; nil for
        /// an unknown entity or a bare `&`.
        static func decodeReferences(_ text: String) -> String? {
            guard text.contains("&") else { return text }
            var out = ""
            var rest = Substring(text)
            while let amp = rest.firstIndex(of: "&") {
                out += rest[..<amp]
                guard let semicolon = rest[amp...].firstIndex(of: ";") else { return nil }
                let entity = rest[rest.index(after: amp)..<semicolon]
                switch entity {
                case "amp": out += "&"
                case "lt": out += "<"
                case "gt": out += ">"
                case "quot": out += "\""
                case "apos": out += "'"
                default:
                    let value: UInt32?
                    if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                        value = UInt32(entity.dropFirst(2), radix: 16)
                    } else if entity.hasPrefix("#") {
                        value = UInt32(entity.dropFirst(), radix: 10)
                    } else {
                        value = nil
                    }
                    guard let value, let scalar = Unicode.Scalar(value) else { return nil }
                    out.unicodeScalars.append(scalar)
                }
                rest = rest[rest.index(after: semicolon)...]
            }
            return out + rest
        }
    }
}
