extension UntypedJSON {
    /// `value` (as `parse` gives it) laid out as `JSONEncoder` with `.prettyPrinted`,
    /// `.sortedKeys` and `.withoutEscapingSlashes` did: two-space indents, `"key" : value`,
    /// keys in `String` order, integral numbers without a fraction. For people reading a
    /// document whole (`tokenbroker get --output json`).
    public static func prettyPrinted(_ value: Any) -> String {
        var out: [UInt8] = []
        appendPretty(value, indent: 0, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private static func appendPretty(_ value: Any, indent: Int, to out: inout [UInt8]) {
        switch value {
        case let object as [String: Any]:
            out.append(UInt8(ascii: "{"))
            appendPrettyElements(object.keys.sorted(), close: "}", indent: indent, to: &out) { key, out in
                appendString(key, to: &out)
                out += Array(" : ".utf8)
                appendPretty(object[key]!, indent: indent + 2, to: &out)
            }
        case let array as [Any]:
            out.append(UInt8(ascii: "["))
            appendPrettyElements(array, close: "]", indent: indent, to: &out) { element, out in
                appendPretty(element, indent: indent + 2, to: &out)
            }
        case let string as String: appendString(string, to: &out)
        case let bool as Bool: out += Array((bool ? "true" : "false").utf8)
        case let number as Double:
            if let integer = Int64(exactly: number), abs(integer) < 1 << 53 {
                out += Array(String(integer).utf8)
            } else {
                out += Array((number.isFinite ? "\(number)" : "null").utf8)
            }
        default: out += Array("null".utf8)
        }
    }

    /// The elements one per line, indented; an empty container as `JSONEncoder` wrote it
    /// (an empty line between the brackets).
    private static func appendPrettyElements<Element>(
        _ elements: [Element], close: Unicode.Scalar, indent: Int, to out: inout [UInt8], _ append: (Element, inout [UInt8]) -> Void
    ) {
        let inner = Array(repeating: UInt8(ascii: " "), count: indent + 2)
        out.append(UInt8(ascii: "\n"))
        for (index, element) in elements.enumerated() {
            if index > 0 { out += Array(",\n".utf8) }
            out += inner
            append(element, &out)
        }
        out.append(UInt8(ascii: "\n"))
        out += Array(repeating: UInt8(ascii: " "), count: indent)
        out.append(UInt8(close.value))
    }
}
