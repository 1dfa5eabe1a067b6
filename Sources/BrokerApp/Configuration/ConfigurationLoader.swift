import Glibc
import TokenExchange

/// Reads and validates the YAML configuration. Every problem is collected with its
/// field path, so one run of `tokenbrokerd check-config` shows all of them.
public enum ConfigurationLoader {
    /// Parses `yaml` (from `origin`, for messages) and merges the zero-config
    /// identity from `environment`.
    public static func load(yaml: String, origin: String, environment: [String: String]) throws(ConfigurationError) -> BrokerConfiguration {
        var reader = NodeReader()
        var configuration = BrokerConfiguration()
        let root: Node?
        do {
            root = try YAMLComposer.compose(yaml)
        } catch {
            throw ConfigurationError(origin: origin, issues: [.init(path: "", message: "not valid YAML: \(error.message)")])
        }
        if let root = NodeReader.present(root) {
            read(root, into: &configuration, environment: environment, reader: &reader)
        }
        ZeroConfig.apply(environment: environment, to: &configuration, reader: &reader)
        // After the zero-config identity is added: a sink may name it.
        if let sinks = NodeReader.present(root)?.mapping?["sinks"] {
            configuration.sinks = SinkReader.read(sinks, identities: configuration.identities, reader: &reader)
        }
        checkEnvironmentCABundle(environment, reader: &reader)
        guard reader.issues.isEmpty else { throw ConfigurationError(origin: origin, issues: reader.issuesInFileOrder) }
        return configuration
    }

    /// Reads the file at `path`: a regular file of at most 1 MiB (`RegularFile`); a FIFO,
    /// a directory or a device there is refused rather than blocked on or read as empty.
    public static func load(path: String, environment: [String: String]) throws(ConfigurationError) -> BrokerConfiguration {
        let text: String
        do {
            text = try RegularFile.read(path)
        } catch {
            throw ConfigurationError(origin: path, issues: [.init(path: "", message: "cannot read \(path): \(error)")])
        }
        return try load(yaml: text, origin: path, environment: environment)
    }

    private static func read(_ root: Node, into configuration: inout BrokerConfiguration, environment: [String: String], reader: inout NodeReader) {
        guard
            let top = reader.mapping(
                root, at: "",
                keys: [
                    "socket", "limits", "cache", "upstream", "log", "readiness", "compat", "kubernetes", "identities", "sinks", "allowNoIdentities",
                ])
        else { return }
        reader.bool(top["allowNoIdentities"], at: "allowNoIdentities").map { configuration.allowNoIdentities = $0 }

        readSocket(top["socket"], into: &configuration.socket, reader: &reader)
        if let limits = reader.mapping(top["limits"], at: "limits", keys: LimitsReader.keys) {
            LimitsReader.read(limits, into: &configuration.limits, reader: &reader)
        }
        readCache(top["cache"], into: &configuration.cache, reader: &reader)
        readUpstream(top["upstream"], into: &configuration.upstream, reader: &reader)
        readLog(top["log"], into: &configuration.log, reader: &reader)
        if let node = NodeReader.present(top["readiness"]) {
            readReadiness(node, into: &configuration.readiness, reader: &reader)
        }
        readCompat(top["compat"], into: &configuration.compat, reader: &reader)
        if let node = NodeReader.present(top["kubernetes"]) { configuration.kubernetes = KubernetesReader.read(node, reader: &reader) }
        readIdentities(top["identities"], into: &configuration.identities, environment: environment, reader: &reader)
        validateCompat(configuration, compatNode: top["compat"], reader: &reader)
    }

    private static func readSocket(_ node: Node?, into settings: inout BrokerConfiguration.SocketSettings, reader: inout NodeReader) {
        guard let socket = reader.mapping(node, at: "socket", keys: ["path", "mode", "group"]) else { return }
        if let path = reader.string(socket["path"], at: "socket.path") {
            if !path.hasPrefix("/") {
                reader.report("socket.path", "must be an absolute path", socket["path"])
            } else if checkSocketPath(path, at: "socket.path", node: socket["path"], reader: &reader) {
                settings.path = path
            }
        }
        if let node = socket["mode"], let text = reader.string(node, at: "socket.mode") {
            if let mode = UInt32(text, radix: 8), mode <= 0o777 {
                settings.mode = mode
            } else {
                reader.report("socket.mode", "must be octal permission bits such as \"0660\", got '\(text)'", node)
            }
        }
        if let group = reader.string(socket["group"], at: "socket.group") {
            // Resolved now so that check-config catches a group that does not exist.
            if UInt32(group) != nil || getgrnam(group) != nil {
                settings.group = group
            } else {
                reader.report("socket.group", "no such group '\(group)'", socket["group"])
            }
        }
    }

    private static func readCache(_ node: Node?, into settings: inout BrokerConfiguration.CacheSettings, reader: inout NodeReader) {
        guard
            let cache = reader.mapping(
                node, at: "cache", keys: ["maxScopesPerIdentity", "minValiditySeconds", "minRefreshIntervalSeconds", "maxConcurrentExchanges"])
        else { return }
        reader.int(cache["maxScopesPerIdentity"], at: "cache.maxScopesPerIdentity", in: 1...100_000).map {
            settings.maxScopesPerIdentity = $0
        }
        reader.int(cache["minValiditySeconds"], at: "cache.minValiditySeconds", in: 0...86_400).map {
            settings.minValiditySeconds = $0
        }
        reader.int(cache["minRefreshIntervalSeconds"], at: "cache.minRefreshIntervalSeconds", in: 0...3600).map {
            settings.minRefreshIntervalSeconds = $0
        }
        reader.int(cache["maxConcurrentExchanges"], at: "cache.maxConcurrentExchanges", in: 1...1024).map {
            settings.maxConcurrentExchanges = $0
        }
    }

    private static func readUpstream(_ node: Node?, into settings: inout BrokerConfiguration.UpstreamSettings, reader: inout NodeReader) {
        guard let upstream = reader.mapping(node, at: "upstream", keys: ["caFile", "timeoutSeconds", "allowInsecureLoopback"]) else { return }
        settings.caFile = reader.string(upstream["caFile"], at: "upstream.caFile")
        if let file = settings.caFile { checkCABundle(file, at: "upstream.caFile", node: upstream["caFile"], reader: &reader) }
        reader.int(upstream["timeoutSeconds"], at: "upstream.timeoutSeconds", in: 1...600).map { settings.timeoutSeconds = $0 }
        reader.bool(upstream["allowInsecureLoopback"], at: "upstream.allowInsecureLoopback").map {
            settings.allowInsecureLoopback = $0
        }
    }

    private static func readLog(_ node: Node?, into settings: inout BrokerConfiguration.LogSettings, reader: inout NodeReader) {
        guard let log = reader.mapping(node, at: "log", keys: ["level"]), let level = reader.string(log["level"], at: "log.level") else { return }
        if LogLevelName.parse(level) != nil {
            settings.level = level
        } else {
            reader.report("log.level", "must be one of \(LogLevelName.all.joined(separator: ", ")), got '\(level)'", log["level"])
        }
    }

    private static func readIdentities(
        _ node: Node?, into identities: inout [IdentityConfiguration], environment: [String: String], reader: inout NodeReader
    ) {
        guard let list = reader.sequence(node, at: "identities") else { return }
        for (index, node) in list.enumerated() {
            if let identity = IdentityReader.read(node, at: "identities[\(index)]", environment: environment, reader: &reader) {
                if identities.contains(where: { $0.name == identity.name }) {
                    reader.report("identities[\(index)].name", "identity '\(identity.name)' is defined twice", node)
                } else {
                    identities.append(identity)
                }
            }
        }
    }
}

extension ConfigurationLoader {
    static func readReadiness(_ node: Node, into readiness: inout BrokerConfiguration.ReadinessSettings, reader: inout NodeReader) {
        func mode(_ text: String, _ node: Node?, _ path: String) {
            if let mode = BrokerConfiguration.ReadinessSettings.Mode(rawValue: text) {
                readiness.mode = mode
            } else {
                reader.report(path, "must be listening or token, got '\(text)'", node)
            }
        }
        if node.scalar != nil {
            if let text = reader.string(node, at: "readiness") { mode(text, node, "readiness") }
            return
        }
        guard let fields = reader.mapping(node, at: "readiness", keys: ["mode", "timeoutSeconds"]) else { return }
        if let text = reader.string(fields["mode"], at: "readiness.mode") { mode(text, fields["mode"], "readiness.mode") }
        reader.int(fields["timeoutSeconds"], at: "readiness.timeoutSeconds", in: 1...3600).map { readiness.timeoutSeconds = $0 }
    }
}
