import Glibc
import TokenExchange
import Yams

/// Reads one entry of `identities:`.
enum IdentityReader {
    static func read(_ node: Node, at path: String, environment: [String: String] = [:], reader: inout NodeReader) -> IdentityConfiguration? {
        guard let fields = reader.mapping(node, at: path, keys: ["name", "source", "exchange", "allow", "prefetch", "aliases"]) else { return nil }
        let name = reader.requiredString(fields["name"], at: "\(path).name", parent: node)
        if let name, !isValidName(name) {
            reader.report("\(path).name", "must be 1-64 characters of a-z, A-Z, 0-9, '.', '_' or '-', starting with a letter or digit", fields["name"])
        }
        let source = readSource(fields["source"], at: "\(path).source", parent: node, environment: environment, reader: &reader)
        let exchange = readExchange(fields["exchange"], at: "\(path).exchange", parent: node, reader: &reader)
        let allow = readAllow(fields["allow"], at: "\(path).allow", reader: &reader)
        var prefetch: [Scope] = []
        for (index, item) in (reader.sequence(fields["prefetch"], at: "\(path).prefetch") ?? []).enumerated() {
            if let scope = reader.string(item, at: "\(path).prefetch[\(index)]") { prefetch.append(Scope(scope)) }
        }
        let aliases = readAliases(fields["aliases"], at: "\(path).aliases", reader: &reader)
        guard let name, isValidName(name), let source, let exchange, let allow else { return nil }
        return IdentityConfiguration(name: name, source: source, exchange: exchange, allow: allow, prefetch: prefetch, aliases: aliases)
    }

    static func isValidName(_ name: String) -> Bool {
        guard (1...64).contains(name.count), let first = name.unicodeScalars.first, first.isASCIIAlphanumeric else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCIIAlphanumeric || $0 == "." || $0 == "_" || $0 == "-" }
    }

    private static func readAllow(_ node: Node?, at path: String, reader: inout NodeReader) -> [AllowRule]? {
        guard let list = reader.sequence(node, at: path) else { return NodeReader.present(node) == nil ? [] : nil }
        var rules: [AllowRule] = []
        var valid = true
        for (index, item) in list.enumerated() {
            let itemPath = "\(path)[\(index)]"
            guard let fields = reader.mapping(item, at: itemPath, keys: ["uid", "user", "gid", "group", "any"]), fields.count == 1, let (kind, value) = fields.first else {
                if item.mapping != nil { reader.report(itemPath, "must have exactly one of uid, user, gid, group, any", item) }
                valid = false
                continue
            }
            switch kind {
            case "uid", "gid":
                guard let number = reader.int(value, at: "\(itemPath).\(kind)", in: 0...Int(UInt32.max - 1)) else { valid = false; continue }
                rules.append(kind == "uid" ? .uid(UInt32(number)) : .gid(UInt32(number)))
            case "user":
                guard let name = reader.string(value, at: "\(itemPath).user") else { valid = false; continue }
                guard let entry = getpwnam(name) else {
                    reader.report("\(itemPath).user", "no such user '\(name)'", value)
                    valid = false
                    continue
                }
                rules.append(.uid(entry.pointee.pw_uid))
            case "group":
                guard let name = reader.string(value, at: "\(itemPath).group") else { valid = false; continue }
                guard let entry = getgrnam(name) else {
                    reader.report("\(itemPath).group", "no such group '\(name)'", value)
                    valid = false
                    continue
                }
                rules.append(.gid(entry.pointee.gr_gid))
            default:
                guard let any = reader.bool(value, at: "\(itemPath).any") else { valid = false; continue }
                if any { rules.append(.any) }
            }
        }
        return valid ? rules : nil
    }
}

extension Unicode.Scalar {
    fileprivate var isASCIIAlphanumeric: Bool {
        ("a"..."z").contains(self) || ("A"..."Z").contains(self) || ("0"..."9").contains(self)
    }
}
