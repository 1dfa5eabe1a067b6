/// How to run one exec plugin: the command, its environment and its limits.
///
/// The same shape serves both kinds of plugin (assertion source and exchange). The broker
/// builds it from the `exec:` block of an identity's `source` or `exchange` (see
/// `docs/plugins.md`); `validate()` names the field that is wrong.
public struct ExecPluginConfiguration: Sendable, Equatable {
    /// The absolute path of the executable, then its arguments. Run as is: no shell, no
    /// `PATH` lookup, no word splitting. No default; must not be empty.
    public var command: [String]
    /// Variables added to the plugin's environment, which otherwise holds only
    /// `PATH=/usr/local/bin:/usr/bin:/bin` (nothing of the daemon's own environment).
    /// A `PATH` given here replaces that one. Default: none.
    public var environment: [String: String]
    /// How long one run may take, from spawn to the end of its output; then the plugin's
    /// process group is killed. Default 10 s.
    public var timeout: Duration
    /// The most stdout may hold; more kills the plugin. Default 1 MiB. (Of stderr only the
    /// last 512 bytes are kept, for error messages.)
    public var maxOutputBytes: Int

    /// The `PATH` every plugin gets unless `environment` sets its own.
    public static let defaultPath = "/usr/local/bin:/usr/bin:/bin"

    /// Creates a configuration; see each property for its default.
    public init(command: [String], environment: [String: String] = [:], timeout: Duration = .seconds(10), maxOutputBytes: Int = 1 << 20) {
        self.command = command
        self.environment = environment
        self.timeout = timeout
        self.maxOutputBytes = maxOutputBytes
    }

    /// Why a configuration cannot be used; `field` uses the configuration file's names
    /// (`command`, `env`, `timeoutSeconds`, `maxOutputBytes`).
    public struct ValidationError: Error, Sendable, Equatable, CustomStringConvertible {
        /// The offending field, e.g. `command` or `env.FOO`.
        public var field: String
        /// What is wrong with it.
        public var reason: String

        /// Creates an error naming a field.
        public init(field: String, reason: String) {
            self.field = field
            self.reason = reason
        }

        public var description: String { "\(field): \(reason)" }
    }

    /// Checks what can be checked without running the plugin: an absolute executable path,
    /// well-formed variable names, a positive timeout and output limit.
    ///
    /// Whether the executable exists is checked at each run (it may be installed later).
    public func validate() throws(ValidationError) {
        guard let executable = command.first, !executable.isEmpty else {
            throw ValidationError(field: "command", reason: "must name an executable (an absolute path, then its arguments)")
        }
        guard executable.hasPrefix("/") else {
            throw ValidationError(field: "command", reason: "'\(executable)' is not an absolute path; plugins are run without a shell or PATH lookup")
        }
        if let index = command.firstIndex(where: { $0.utf8.contains(0) }) {
            throw ValidationError(field: "command[\(index)]", reason: "contains a NUL byte")
        }
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) {
            guard !name.isEmpty, !name.utf8.contains(UInt8(ascii: "=")), !name.utf8.contains(0) else {
                throw ValidationError(field: "env", reason: "'\(name)' is not a valid variable name (empty, or contains '=' or NUL)")
            }
            guard !value.utf8.contains(0) else {
                throw ValidationError(field: "env.\(name)", reason: "contains a NUL byte")
            }
        }
        guard timeout > .zero else {
            throw ValidationError(field: "timeoutSeconds", reason: "must be positive")
        }
        guard maxOutputBytes > 0 else {
            throw ValidationError(field: "maxOutputBytes", reason: "must be positive")
        }
    }

    /// The plugin's complete environment as `KEY=value` strings, sorted by name.
    var spawnEnvironment: [String] {
        var merged = ["PATH": Self.defaultPath]
        merged.merge(environment) { _, configured in configured }
        return merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }
}
