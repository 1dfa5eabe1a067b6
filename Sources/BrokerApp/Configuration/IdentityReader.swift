import TokenExchange

/// Reads one entry of `identities:`.
enum IdentityReader {
    static func read(_ node: Node, at path: String, environment: [String: String] = [:], reader: inout NodeReader) -> IdentityConfiguration? {
        guard let fields = reader.mapping(node, at: path, keys: ["name", "source", "exchange", "allow", "prefetch", "aliases"]) else { return nil }
        let name = reader.requiredString(fields["name"], at: "\(path).name", parent: node)
        if let name, !isValidName(name) {
            reader.report(
                "\(path).name", "must be 1-64 characters of a-z, A-Z, 0-9, '.', '_' or '-', starting with a letter or digit", fields["name"])
        }
        let source = readSource(fields["source"], at: "\(path).source", parent: node, environment: environment, reader: &reader)
        let exchange = readExchange(fields["exchange"], at: "\(path).exchange", parent: node, reader: &reader)
        let allow = AllowRuleReader.read(fields["allow"], at: "\(path).allow", reader: &reader)
        var prefetch: [Scope] = []
        for (index, item) in (reader.sequence(fields["prefetch"], at: "\(path).prefetch") ?? []).enumerated() {
            guard let scope = reader.string(item, at: "\(path).prefetch[\(index)]") else { continue }
            // Entra's client-credential flow takes only `<resource>/.default` (AADSTS1002012
            // at run time otherwise): catch it while the file is being written.
            if case .entra = exchange, !scope.hasSuffix("/.default") {
                let suggestion = scope.hasSuffix("/") ? "\(scope).default" : "\(scope)/.default"
                reader.report("\(path).prefetch[\(index)]", "Entra scopes end in '/.default' (a resource's scope), e.g. '\(suggestion)'", item)
                continue
            }
            prefetch.append(Scope(scope))
        }
        let aliases = readAliases(fields["aliases"], at: "\(path).aliases", reader: &reader)
        if let name, case .awsSts(let aws) = exchange {
            do { _ = try aws.sessionName(forIdentity: name) } catch {
                reader.report("\(path).exchange.awsSts.sessionName", "for identity '\(name)': \(error.message)", fields["exchange"])
                return nil
            }
        }
        guard let name, isValidName(name), let source, let exchange, let allow else { return nil }
        return IdentityConfiguration(name: name, source: source, exchange: exchange, allow: allow, prefetch: prefetch, aliases: aliases)
    }

    static func isValidName(_ name: String) -> Bool {
        guard (1...64).contains(name.count), let first = name.unicodeScalars.first, first.isASCIIAlphanumeric else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCIIAlphanumeric || $0 == "." || $0 == "_" || $0 == "-" }
    }
}

extension Unicode.Scalar {
    fileprivate var isASCIIAlphanumeric: Bool {
        ("a"..."z").contains(self) || ("A"..."Z").contains(self) || ("0"..."9").contains(self)
    }
}
