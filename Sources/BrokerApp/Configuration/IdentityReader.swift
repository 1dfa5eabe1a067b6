import TokenExchange
import Yams

/// Reads one entry of `identities:`.
enum IdentityReader {
    static func read(_ node: Node, at path: String, reader: inout NodeReader) -> IdentityConfiguration? {
        guard let fields = reader.mapping(node, at: path, keys: ["name", "source", "exchange", "allow", "prefetch"]) else { return nil }
        let name = reader.requiredString(fields["name"], at: "\(path).name", parent: node)
        if let name, !isValidName(name) {
            reader.report("\(path).name", "must be 1-64 characters of a-z, A-Z, 0-9, '.', '_' or '-', starting with a letter or digit", fields["name"])
        }
        let source = readSource(fields["source"], at: "\(path).source", parent: node, reader: &reader)
        let exchange = readExchange(fields["exchange"], at: "\(path).exchange", parent: node, reader: &reader)
        let allow = AllowRuleReader.read(fields["allow"], at: "\(path).allow", reader: &reader)
        var prefetch: [Scope] = []
        for (index, item) in (reader.sequence(fields["prefetch"], at: "\(path).prefetch") ?? []).enumerated() {
            if let scope = reader.string(item, at: "\(path).prefetch[\(index)]") { prefetch.append(Scope(scope)) }
        }
        guard let name, isValidName(name), let source, let exchange, let allow else { return nil }
        return IdentityConfiguration(name: name, source: source, exchange: exchange, allow: allow, prefetch: prefetch)
    }

    static func isValidName(_ name: String) -> Bool {
        guard (1...64).contains(name.count), let first = name.unicodeScalars.first, first.isASCIIAlphanumeric else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCIIAlphanumeric || $0 == "." || $0 == "_" || $0 == "-" }
    }

    private static func readSource(_ node: Node?, at path: String, parent: Node, reader: inout NodeReader) -> AssertionSourceConfiguration? {
        guard NodeReader.present(node) != nil else {
            reader.report(path, "is required, e.g. { file: /var/run/secrets/azure/tokens/azure-identity-token }", parent)
            return nil
        }
        guard let fields = reader.mapping(node, at: path, keys: ["file"]) else { return nil }
        guard let file = reader.requiredString(fields["file"], at: "\(path).file", parent: node) else { return nil }
        guard file.hasPrefix("/") else {
            reader.report("\(path).file", "must be an absolute path", fields["file"])
            return nil
        }
        return .file(path: file)
    }

    private static func readExchange(_ node: Node?, at path: String, parent: Node, reader: inout NodeReader) -> ExchangeConfiguration? {
        guard NodeReader.present(node) != nil else {
            reader.report(path, "is required, e.g. { entra: { tenantId: …, clientId: … } }", parent)
            return nil
        }
        guard let fields = reader.mapping(node, at: path, keys: ["entra"]) else { return nil }
        guard let entraNode = fields["entra"] else {
            reader.report(path, "must name an exchange: entra", node)
            return nil
        }
        guard let entra = reader.mapping(entraNode, at: "\(path).entra", keys: ["tenantId", "clientId", "authorityHost"]) else { return nil }
        let tenant = reader.requiredString(entra["tenantId"], at: "\(path).entra.tenantId", parent: entraNode)
        let client = reader.requiredString(entra["clientId"], at: "\(path).entra.clientId", parent: entraNode)
        let authority = reader.string(entra["authorityHost"], at: "\(path).entra.authorityHost") ?? EntraConfiguration.publicCloudAuthorityHost
        guard let tenant, let client else { return nil }
        do {
            return .entra(try EntraConfiguration(tenantId: tenant, clientId: client, authorityHost: authority))
        } catch {
            let field = error.message.hasPrefix("authorityHost") ? "authorityHost" : error.message.hasPrefix("tenantId") ? "tenantId" : "clientId"
            reader.report("\(path).entra.\(field)", error.message, entra[field] ?? entraNode)
            return nil
        }
    }
}

extension Unicode.Scalar {
    fileprivate var isASCIIAlphanumeric: Bool {
        ("a"..."z").contains(self) || ("A"..."Z").contains(self) || ("0"..."9").contains(self)
    }
}
