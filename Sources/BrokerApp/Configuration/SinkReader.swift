import Glibc
import TokenExchange

/// Reads `sinks:` once the identities are known: a sink names one of them (or the only one
/// that gives its kind of token), and its format must fit what that identity gives.
enum SinkReader {
    static let keys: Set<String> = ["identity", "scope", "path", "format", "mode", "owner", "refreshBeforeExpirySeconds", "onRotate"]
    /// Signals `onRotate.signal` may send.
    static let signals: [String: Int32] = ["HUP": SIGHUP, "USR1": SIGUSR1, "USR2": SIGUSR2]

    static func read(_ node: Node?, identities: [IdentityConfiguration], reader: inout NodeReader) -> [SinkSettings] {
        var sinks: [SinkSettings] = []
        for (index, item) in (reader.sequence(node, at: "sinks") ?? []).enumerated() {
            let path = "sinks[\(index)]"
            guard let sink = readOne(item, at: path, identities: identities, reader: &reader) else { continue }
            if sinks.contains(where: { $0.path == sink.path }) {
                reader.report("\(path).path", "\(sink.path) is the path of an earlier sink; each sink needs a file of its own", item)
                continue
            }
            sinks.append(sink)
        }
        return sinks
    }

    private static func readOne(_ node: Node, at path: String, identities: [IdentityConfiguration], reader: inout NodeReader) -> SinkSettings? {
        guard let fields = reader.mapping(node, at: path, keys: keys) else { return nil }
        var valid = true
        var format = SinkSettings.Format.token
        if let text = reader.string(fields["format"], at: "\(path).format") {
            if let parsed = SinkSettings.Format(rawValue: text) {
                format = parsed
            } else {
                reader.report(
                    "\(path).format", "must be one of \(SinkSettings.Format.allCases.map(\.rawValue).joined(separator: ", ")), got '\(text)'",
                    fields["format"])
                valid = false
            }
        }
        let scopeText = reader.string(fields["scope"], at: "\(path).scope")
        let identity = resolveIdentity(
            fields["identity"], format: format, scopeGiven: scopeText != nil, at: path, parent: node, identities: identities, reader: &reader)
        let filePath = readPath(fields["path"], at: "\(path).path", parent: node, reader: &reader)
        var scope: Scope?
        if let identity {
            let isAWS = identity.exchange.implicitScope != nil
            if isAWS, format == .token || format == .header {
                reader.report(
                    "\(path).format", "identity '\(identity.name)' gives AWS credentials, not an access token; use aws-credentials, env or json",
                    fields["format"] ?? node)
                valid = false
            } else if !isAWS, format == .awsCredentials {
                reader.report(
                    "\(path).format", "identity '\(identity.name)' gives access tokens, not AWS credentials; use token, header, json or env",
                    fields["format"])
                valid = false
            }
            if let implicit = identity.exchange.implicitScope {
                if scopeText != nil {
                    reader.report(
                        "\(path).scope", "leave it out: AWS identity '\(identity.name)' gives credentials for its role, not for a scope",
                        fields["scope"])
                    valid = false
                }
                scope = implicit
            } else if let scopeText {
                scope = Scope(scopeText)
            } else {
                reader.report(
                    "\(path).scope",
                    "is required: identity '\(identity.name)' gives access tokens for a scope, e.g. https://storage.azure.com/.default", node)
            }
        }
        guard let identity, let scope, let filePath, valid else {
            // Still report what else is wrong, so one check-config run shows every problem.
            var scratch = SinkSettings(identity: "", scope: Scope(""), path: "")
            _ = checkRest(fields, at: path, into: &scratch, reader: &reader)
            return nil
        }
        var sink = SinkSettings(identity: identity.name, scope: scope, path: filePath)
        sink.format = format
        guard checkRest(fields, at: path, into: &sink, reader: &reader) else { return nil }
        return sink
    }

    /// Reads mode, owner, refresh and onRotate into `sink`; false when one was wrong.
    private static func checkRest(_ fields: [String: Node], at path: String, into sink: inout SinkSettings, reader: inout NodeReader) -> Bool {
        let before = reader.issues.count
        if let node = fields["mode"], let text = reader.string(node, at: "\(path).mode") {
            if let mode = UInt32(text, radix: 8), mode <= 0o777 {
                if mode & 0o117 != 0 {
                    reader.report(
                        "\(path).mode",
                        "\(text) gives others access or someone execute; a token file is read by its owner or group only (0440, 0400, 0640 or 0600)",
                        node)
                } else if mode & 0o440 == 0 {
                    reader.report("\(path).mode", "\(text) lets no one read the file; use 0440 or 0400", node)
                } else {
                    sink.mode = mode
                }
            } else {
                reader.report("\(path).mode", "must be octal permission bits such as \"0440\", got '\(text)'", node)
            }
        }
        if let owner = reader.string(fields["owner"], at: "\(path).owner") {
            if case .failure(let error) = SinkOwner.resolve(owner) {
                reader.report("\(path).owner", error.message, fields["owner"])
            } else {
                sink.owner = owner
            }
        }
        if let seconds = reader.int(fields["refreshBeforeExpirySeconds"], at: "\(path).refreshBeforeExpirySeconds", in: 0...86_400) {
            sink.refreshBeforeExpirySeconds = seconds
        }
        if let node = NodeReader.present(fields["onRotate"]) {
            sink.onRotate = readRotate(node, at: "\(path).onRotate", reader: &reader)
        }
        return reader.issues.count == before
    }
}
