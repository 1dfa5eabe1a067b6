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

        if let socket = reader.mapping(top["socket"], at: "socket", keys: ["path", "mode", "group"]) {
            if let path = reader.string(socket["path"], at: "socket.path") {
                if !path.hasPrefix("/") {
                    reader.report("socket.path", "must be an absolute path", socket["path"])
                } else if checkSocketPath(path, at: "socket.path", node: socket["path"], reader: &reader) {
                    configuration.socket.path = path
                }
            }
            if let node = socket["mode"], let text = reader.string(node, at: "socket.mode") {
                if let mode = UInt32(text, radix: 8), mode <= 0o777 {
                    configuration.socket.mode = mode
                } else {
                    reader.report("socket.mode", "must be octal permission bits such as \"0660\", got '\(text)'", node)
                }
            }
            if let group = reader.string(socket["group"], at: "socket.group") {
                // Resolved now so that check-config catches a group that does not exist.
                if UInt32(group) != nil || getgrnam(group) != nil {
                    configuration.socket.group = group
                } else {
                    reader.report("socket.group", "no such group '\(group)'", socket["group"])
                }
            }
        }
        if let limits = reader.mapping(top["limits"], at: "limits", keys: LimitsReader.keys) {
            LimitsReader.read(limits, into: &configuration.limits, reader: &reader)
        }
        if let cache = reader.mapping(
            top["cache"], at: "cache", keys: ["maxScopesPerIdentity", "minValiditySeconds", "minRefreshIntervalSeconds", "maxConcurrentExchanges"])
        {
            reader.int(cache["maxScopesPerIdentity"], at: "cache.maxScopesPerIdentity", in: 1...100_000).map {
                configuration.cache.maxScopesPerIdentity = $0
            }
            reader.int(cache["minValiditySeconds"], at: "cache.minValiditySeconds", in: 0...86_400).map {
                configuration.cache.minValiditySeconds = $0
            }
            reader.int(cache["minRefreshIntervalSeconds"], at: "cache.minRefreshIntervalSeconds", in: 0...3600).map {
                configuration.cache.minRefreshIntervalSeconds = $0
            }
            reader.int(cache["maxConcurrentExchanges"], at: "cache.maxConcurrentExchanges", in: 1...1024).map {
                configuration.cache.maxConcurrentExchanges = $0
            }
        }
        if let upstream = reader.mapping(top["upstream"], at: "upstream", keys: ["caFile", "timeoutSeconds", "allowInsecureLoopback"]) {
            configuration.upstream.caFile = reader.string(upstream["caFile"], at: "upstream.caFile")
            if let file = configuration.upstream.caFile { checkCABundle(file, at: "upstream.caFile", node: upstream["caFile"], reader: &reader) }
            reader.int(upstream["timeoutSeconds"], at: "upstream.timeoutSeconds", in: 1...600).map { configuration.upstream.timeoutSeconds = $0 }
            reader.bool(upstream["allowInsecureLoopback"], at: "upstream.allowInsecureLoopback").map {
                configuration.upstream.allowInsecureLoopback = $0
            }
        }
        if let log = reader.mapping(top["log"], at: "log", keys: ["level"]), let level = reader.string(log["level"], at: "log.level") {
            if LogLevelName.parse(level) != nil {
                configuration.log.level = level
            } else {
                reader.report("log.level", "must be one of \(LogLevelName.all.joined(separator: ", ")), got '\(level)'", log["level"])
            }
        }
        if let node = NodeReader.present(top["readiness"]) {
            readReadiness(node, into: &configuration.readiness, reader: &reader)
        }
        readCompat(top["compat"], into: &configuration.compat, reader: &reader)
        if let node = NodeReader.present(top["kubernetes"]) { configuration.kubernetes = KubernetesReader.read(node, reader: &reader) }
        if let list = reader.sequence(top["identities"], at: "identities") {
            for (index, node) in list.enumerated() {
                if let identity = IdentityReader.read(node, at: "identities[\(index)]", environment: environment, reader: &reader) {
                    if configuration.identities.contains(where: { $0.name == identity.name }) {
                        reader.report("identities[\(index)].name", "identity '\(identity.name)' is defined twice", node)
                    } else {
                        configuration.identities.append(identity)
                    }
                }
            }
        }
        validateCompat(configuration, compatNode: top["compat"], reader: &reader)
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
