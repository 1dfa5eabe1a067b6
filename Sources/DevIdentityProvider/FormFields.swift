import TokenExchange

/// An `application/x-www-form-urlencoded` body, fields kept in the order they were sent.
struct FormFields: Sendable {
    /// Every `name=value` pair, decoded, in order (repeated names kept).
    let pairs: [(name: String, value: String)]

    init(_ body: [UInt8]) {
        pairs = FormEncoding.decode(String(decoding: body, as: UTF8.self)).map { (name: $0.0, value: $0.1) }
    }

    /// Field names in the order sent, for the stats log.
    var names: [String] { pairs.map(\.name) }

    /// The first value of `name`, nil when absent.
    subscript(_ name: String) -> String? {
        pairs.first { $0.name == name }?.value
    }
}
