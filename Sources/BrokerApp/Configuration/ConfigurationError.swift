/// Everything wrong with a configuration, each problem with its field path.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    /// One problem.
    public struct Issue: Sendable, Equatable, CustomStringConvertible {
        /// Field path such as `identities[0].exchange.entra.tenantId`.
        public var path: String
        /// What is wrong with it.
        public var message: String
        /// 1-based line in the file, when known.
        public var line: Int?

        public var description: String {
            "\(path.isEmpty ? "(top level)" : path)\(line.map { " (line \($0))" } ?? ""): \(message)"
        }
    }

    /// Stable code: `invalid_configuration`.
    public let code = "invalid_configuration"
    /// Where the configuration came from (a file path or `environment`).
    public var origin: String
    /// All problems found, in file order.
    public var issues: [Issue]

    public var description: String {
        "\(origin): \(issues.count) problem\(issues.count == 1 ? "" : "s"):\n" + issues.map { "  - \($0)" }.joined(separator: "\n")
    }
}
