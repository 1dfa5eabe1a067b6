import BrokerServer
import Glibc

/// Reads an identity's `allow:` list. Names resolve to numbers and paths to their
/// canonical form here, once, so that a request only compares values.
enum AllowRuleReader {
    static let kinds = ["uid", "user", "gid", "group", "exe", "cgroup", "systemdUnit", "podUID", "any", "all"]

    /// The rules, `[]` when `allow` is absent, nil when any entry is invalid (each reported).
    static func read(_ node: Node?, at path: String, reader: inout NodeReader) -> [AllowRule]? {
        guard let list = reader.sequence(node, at: path) else { return NodeReader.present(node) == nil ? [] : nil }
        var rules: [AllowRule] = []
        var valid = true
        for (index, item) in list.enumerated() {
            guard let entry = readEntry(item, at: "\(path)[\(index)]", reader: &reader) else {
                valid = false
                continue
            }
            if let rule = entry.value { rules.append(rule) }
        }
        return valid ? rules : nil
    }

    /// One `{ KIND: VALUE }` mapping.
    private static func readEntry(_ item: Node, at itemPath: String, reader: inout NodeReader) -> Entry? {
        guard let fields = reader.mapping(item, at: itemPath, keys: Set(kinds)), fields.count == 1, let (kind, value) = fields.first else {
            if item.mapping != nil { reader.report(itemPath, "must have exactly one of \(kinds.joined(separator: ", "))", item) }
            return nil
        }
        if kind == "all" { return readAll(value, at: "\(itemPath).all", reader: &reader) }
        return readRule(kind, value, at: "\(itemPath).\(kind)", reader: &reader)
    }

    /// `{ all: [ RULE, … ] }`: at least two rules, none of them `all` or `any` (which would
    /// say nothing), every one of which must match.
    private static func readAll(_ value: Node, at path: String, reader: inout NodeReader) -> Entry? {
        guard let list = reader.sequence(value, at: path) else { return nil }
        guard list.count >= 2 else {
            reader.report(path, "must list at least two rules that must all match, e.g. [ { uid: 1000 }, { exe: /usr/bin/app } ]", value)
            return nil
        }
        var rules: [AllowRule] = []
        for (index, item) in list.enumerated() {
            let itemPath = "\(path)[\(index)]"
            if let kind = item.mapping?.keys.first?.string, item.mapping?.count == 1, kind == "all" || kind == "any" {
                reader.report(itemPath, "'\(kind)' cannot be part of 'all'", item)
                return nil
            }
            guard let entry = readEntry(item, at: itemPath, reader: &reader), let rule = entry.value else { return nil }
            rules.append(rule)
        }
        return Entry(value: .all(rules))
    }

    /// A wrapper so that `{ any: false }` (valid, no rule) differs from an invalid entry (nil).
    private struct Entry { var value: AllowRule? }

    private static func readRule(_ kind: String, _ value: Node, at path: String, reader: inout NodeReader) -> Entry? {
        switch kind {
        case "uid", "gid":
            guard let number = reader.int(value, at: path, in: 0...Int(UInt32.max - 1)) else { return nil }
            return Entry(value: kind == "uid" ? .uid(UInt32(number)) : .gid(UInt32(number)))
        case "user":
            guard let name = reader.string(value, at: path) else { return nil }
            guard let entry = getpwnam(name) else {
                reader.report(path, "no such user '\(name)'", value)
                return nil
            }
            return Entry(value: .uid(entry.pointee.pw_uid))
        case "group":
            guard let name = reader.string(value, at: path) else { return nil }
            guard let entry = getgrnam(name) else {
                reader.report(path, "no such group '\(name)'", value)
                return nil
            }
            return Entry(value: .gid(entry.pointee.gr_gid))
        case "exe":
            guard let exe = reader.string(value, at: path) else { return nil }
            guard exe.hasPrefix("/") else {
                reader.report(path, "must be an absolute path, e.g. /usr/bin/app", value)
                return nil
            }
            // The kernel reports the executable's real path: resolve symlinks now
            // (/usr/bin/python3 -> python3.11). A path that does not exist yet is kept.
            return Entry(value: .exe(realPath(exe) ?? exe))
        case "cgroup":
            guard let glob = reader.string(value, at: path) else { return nil }
            guard glob.hasPrefix("/") else {
                reader.report(path, "must be an absolute cgroup path or glob, e.g. /system.slice/app.service or /kubepods.slice/*/*/*.scope", value)
                return nil
            }
            return Entry(value: .cgroup(glob))
        case "systemdUnit":
            guard let unit = reader.string(value, at: path) else { return nil }
            guard isValidUnitRule(unit) else {
                reader.report(
                    path, "must be a unit name such as app.service or session-2.scope, or user@UID.service/NAME for a user unit, got '\(unit)'", value
                )
                return nil
            }
            return Entry(value: .systemdUnit(unit))
        case "podUID":
            guard let text = reader.string(value, at: path) else { return nil }
            guard let uid = PeerCredentials.normalisedPodUID(text) else {
                reader.report(path, "must be a pod UID (8-4-4-4-12 hex digits, with dashes or underscores), got '\(text)'", value)
                return nil
            }
            return Entry(value: .podUID(uid))
        default:
            guard let any = reader.bool(value, at: path) else { return nil }
            return Entry(value: any ? .any : nil)
        }
    }

    /// `foo.service`, or `user@UID.service/foo.service` for a unit of a user manager.
    static func isValidUnitRule(_ rule: String) -> Bool {
        let parts = rule.split(separator: "/", omittingEmptySubsequences: false)
        switch parts.count {
        case 1:
            return PeerCredentials.isSystemdUnitName(rule)
        case 2:
            let manager = parts[0]
            guard manager.hasPrefix("user@"), manager.hasSuffix(".service"),
                UInt32(manager.dropFirst("user@".count).dropLast(".service".count)) != nil
            else { return false }
            return PeerCredentials.isSystemdUnitName(String(parts[1]))
        default:
            return false
        }
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
