import FoundationEssentials
import Glibc
import PlainJSON
import TokenExchange

/// Reads an identity's `source:` and `exchange:`: one key naming the kind, its
/// settings below it.
extension IdentityReader {
    static func readSource(
        _ node: Node?, at path: String, parent: Node, environment: [String: String], reader: inout NodeReader
    ) -> AssertionSourceConfiguration? {
        guard NodeReader.present(node) != nil else {
            reader.report(path, "is required, e.g. { file: /var/run/secrets/azure/tokens/azure-identity-token }", parent)
            return nil
        }
        guard let (kind, value) = reader.oneOf(node, at: path, kinds: ["file", "exec", "githubActions", "gcpMetadata"], naming: "source") else {
            return nil
        }
        let here = "\(path).\(kind)"
        switch kind {
        case "file":
            guard let file = reader.string(value, at: here) else { return nil }
            guard file.hasPrefix("/") else {
                reader.report(here, "must be an absolute path", value)
                return nil
            }
            return .file(path: file)
        case "exec":
            guard let settings = reader.mapping(value, at: here, keys: ["command", "audience", "timeoutSeconds", "env"]) else {
                if NodeReader.present(value) == nil { reader.report(here, "needs at least { command: [/path/to/plugin] }", value) }
                return nil
            }
            let audience = reader.string(settings["audience"], at: "\(here).audience")
            return readExec(settings, at: here, node: value, reader: &reader).map { .exec($0, audience: audience) }
        case "githubActions":
            let settings = reader.mapping(value, at: here, keys: ["audience"]) ?? [:]
            let audience = reader.string(settings["audience"], at: "\(here).audience")
            // The runner sets both only for jobs with `permissions: id-token: write`.
            guard let url = environment["ACTIONS_ID_TOKEN_REQUEST_URL"], !url.isEmpty,
                let token = environment["ACTIONS_ID_TOKEN_REQUEST_TOKEN"], !token.isEmpty
            else {
                reader.report(
                    here,
                    "needs ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN in the environment (a GitHub Actions job with permissions: id-token: write)",
                    value)
                return nil
            }
            return .githubActions(audience: audience, requestURL: url, requestToken: token)
        default:
            guard let settings = reader.mapping(value, at: here, keys: ["audience", "baseURL"]) else {
                reader.report(here, "needs { audience: … }", value)
                return nil
            }
            let audience = reader.requiredString(settings["audience"], at: "\(here).audience", parent: value)
            let base = reader.string(settings["baseURL"], at: "\(here).baseURL") ?? "http://metadata.google.internal"
            guard base.hasPrefix("http://") || base.hasPrefix("https://") else {
                reader.report("\(here).baseURL", "must be an http(s) URL, got '\(base)'", settings["baseURL"])
                return nil
            }
            return audience.map { .gcpMetadata(audience: $0, baseURL: base) }
        }
    }

    static func readExchange(_ node: Node?, at path: String, parent: Node, reader: inout NodeReader) -> ExchangeConfiguration? {
        guard NodeReader.present(node) != nil else {
            reader.report(path, "is required, e.g. { entra: { tenantId: …, clientId: … } }", parent)
            return nil
        }
        guard let (kind, value) = reader.oneOf(node, at: path, kinds: ["entra", "rfc8693", "awsSts", "exec", "none"], naming: "exchange") else {
            return nil
        }
        let here = "\(path).\(kind)"
        switch kind {
        case "entra":
            return readEntra(value, at: here, reader: &reader)
        case "rfc8693":
            return readRFC8693(value, at: here, reader: &reader)
        case "awsSts":
            return readAWSSTS(value, at: here, reader: &reader)
        case "exec":
            guard let settings = reader.mapping(value, at: here, keys: ["command", "timeoutSeconds", "env"]) else {
                if NodeReader.present(value) == nil { reader.report(here, "needs at least { command: [/path/to/plugin] }", value) }
                return nil
            }
            return readExec(settings, at: here, node: value, reader: &reader).map { .exec($0) }
        default:
            if NodeReader.present(value) != nil, value.mapping?.isEmpty != true {
                reader.report(here, "takes no settings: write none: {}", value)
                return nil
            }
            return ExchangeConfiguration.none
        }
    }

    private static func readEntra(_ node: Node, at path: String, reader: inout NodeReader) -> ExchangeConfiguration? {
        guard let entra = reader.mapping(node, at: path, keys: ["tenantId", "clientId", "authorityHost"]) else { return nil }
        let tenant = reader.requiredString(entra["tenantId"], at: "\(path).tenantId", parent: node)
        let client = reader.requiredString(entra["clientId"], at: "\(path).clientId", parent: node)
        let authority = reader.string(entra["authorityHost"], at: "\(path).authorityHost") ?? EntraConfiguration.publicCloudAuthorityHost
        guard let tenant, let client else { return nil }
        do {
            return .entra(try EntraConfiguration(tenantId: tenant, clientId: client, authorityHost: authority))
        } catch {
            let field = error.message.hasPrefix("authorityHost") ? "authorityHost" : error.message.hasPrefix("tenantId") ? "tenantId" : "clientId"
            reader.report("\(path).\(field)", error.message, entra[field] ?? node)
            return nil
        }
    }

    private static func readRFC8693(_ node: Node, at path: String, reader: inout NodeReader) -> ExchangeConfiguration? {
        let keys: Set<String> = ["tokenEndpoint", "audience", "resource", "subjectTokenType", "requestedTokenType", "clientId", "clientSecretFile"]
        guard let fields = reader.mapping(node, at: path, keys: keys) else { return nil }
        guard let endpoint = reader.requiredString(fields["tokenEndpoint"], at: "\(path).tokenEndpoint", parent: node) else { return nil }
        var secret: String?
        if let file = reader.string(fields["clientSecretFile"], at: "\(path).clientSecretFile") {
            // Read at load, like every other file the configuration names: a missing secret
            // is a configuration error now, not an exchange failure later.
            do {
                secret = try RegularFile.read(file, limit: 64 * 1024).trimmed()
            } catch {
                reader.report("\(path).clientSecretFile", "cannot read \(file): \(error)", fields["clientSecretFile"])
                return nil
            }
        }
        do {
            return .rfc8693(
                try RFC8693Configuration(
                    tokenEndpoint: endpoint, audience: reader.string(fields["audience"], at: "\(path).audience"),
                    resource: reader.string(fields["resource"], at: "\(path).resource"),
                    subjectTokenType: reader.string(fields["subjectTokenType"], at: "\(path).subjectTokenType") ?? RFC8693Configuration.jwtTokenType,
                    requestedTokenType: reader.string(fields["requestedTokenType"], at: "\(path).requestedTokenType"),
                    clientId: reader.string(fields["clientId"], at: "\(path).clientId"), clientSecret: secret))
        } catch {
            let field = keys.sorted().first { error.message.hasPrefix($0) } ?? "tokenEndpoint"
            reader.report("\(path).\(field == "clientSecret" ? "clientSecretFile" : field)", error.message, fields[field] ?? node)
            return nil
        }
    }

    private static func readAWSSTS(_ node: Node, at path: String, reader: inout NodeReader) -> ExchangeConfiguration? {
        let keys: Set<String> = ["roleArn", "sessionName", "durationSeconds", "region", "endpoint"]
        guard let fields = reader.mapping(node, at: path, keys: keys) else { return nil }
        guard let role = reader.requiredString(fields["roleArn"], at: "\(path).roleArn", parent: node) else { return nil }
        do {
            return .awsSts(
                try AWSSTSConfiguration(
                    roleArn: role,
                    sessionName: reader.string(fields["sessionName"], at: "\(path).sessionName") ?? AWSSTSConfiguration.defaultSessionName,
                    durationSeconds: reader.int(fields["durationSeconds"], at: "\(path).durationSeconds", in: 1...86_400)
                        ?? AWSSTSConfiguration.defaultDurationSeconds,
                    region: reader.string(fields["region"], at: "\(path).region") ?? AWSSTSConfiguration.defaultRegion,
                    endpoint: reader.string(fields["endpoint"], at: "\(path).endpoint")))
        } catch {
            let field = keys.sorted().first { error.message.hasPrefix($0) } ?? "roleArn"
            reader.report("\(path).\(field)", error.message, fields[field] ?? node)
            return nil
        }
    }

    /// `command`, `timeoutSeconds`, `env` of an exec plugin.
    private static func readExec(_ settings: [String: Node], at path: String, node: Node, reader: inout NodeReader) -> ExecSettings? {
        guard let list = reader.sequence(settings["command"], at: "\(path).command") else {
            if settings["command"] == nil {
                reader.report(
                    "\(path).command", "is required: the plugin's absolute path and arguments, e.g. [/usr/libexec/tokenbroker/plugin, --flag]", node)
            }
            return nil
        }
        var command: [String] = []
        for (index, item) in list.enumerated() {
            guard let argument = reader.string(item, at: "\(path).command[\(index)]") else { return nil }
            command.append(argument)
        }
        guard let executable = command.first, executable.hasPrefix("/") else {
            reader.report("\(path).command", "must start with the plugin's absolute path (no shell, no PATH lookup)", settings["command"])
            return nil
        }
        var result = ExecSettings(command: command)
        reader.int(settings["timeoutSeconds"], at: "\(path).timeoutSeconds", in: 1...300).map { result.timeoutSeconds = $0 }
        if let envNode = NodeReader.present(settings["env"]) {
            guard let pairs = envNode.mapping else {
                reader.report("\(path).env", "must be a mapping of variable names to values", envNode)
                return nil
            }
            for (key, value) in pairs {
                guard let name = key.string, let text = value.scalar?.string else {
                    reader.report("\(path).env", "must map names to strings", key)
                    return nil
                }
                result.environment[name] = text
            }
        }
        return result
    }
}
