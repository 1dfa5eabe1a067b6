public import TokenExchange

/// One entry of `sinks:`: a file the broker keeps holding a fresh token, for programs that
/// read a token only from a file. docs/configuration.md, "sinks".
public struct SinkSettings: Sendable, Equatable {
    /// `identity`: whose token. May be left out when exactly one identity gives the kind of
    /// token `format` needs; the loader then fills in that identity's name.
    public var identity: String
    /// `scope`: required for identities that give access tokens; an AWS identity's is its
    /// role (`ExchangeConfiguration.implicitScope`), which the loader fills in.
    public var scope: Scope
    /// `path`: absolute; written atomically (a temporary file in the same directory, renamed).
    public var path: String
    /// `format`, default `token`.
    public var format = Format.token
    /// `mode`, octal, default `0440`: read-only for the owner and the group; never any bit
    /// for others, nor execute.
    public var mode: UInt32 = 0o440
    /// `owner`: `user` or `user:group`, names or numbers; default the daemon's user and group.
    /// A user without `:group` gets the user's primary group.
    public var owner: String? = nil
    /// `refreshBeforeExpirySeconds`: the file gets a new token at the latest this long before
    /// the one it holds expires (the validity asked of the cache). Default:
    /// `cache.minValiditySeconds` (300).
    public var refreshBeforeExpirySeconds: Int? = nil
    /// `onRotate`: what to do after each new token is written; nil (the default) does nothing.
    public var onRotate: RotateAction? = nil

    /// Creates a sink with the defaults above.
    public init(identity: String, scope: Scope, path: String) {
        self.identity = identity
        self.scope = scope
        self.path = path
    }

    /// What the file holds.
    public enum Format: String, Sendable, Equatable, CaseIterable {
        /// The bare token, no newline.
        case token
        /// The socket's answer to a `token` request, one line of JSON.
        case json
        /// `Authorization: Bearer TOKEN` and a newline (for `curl -H @FILE`, proxies).
        case header
        /// An AWS shared-credentials file with a `[default]` profile (AWS identities only).
        case awsCredentials = "aws-credentials"
        /// `NAME=value` lines for `EnvironmentFile=` or `. FILE`: `ACCESS_TOKEN` and
        /// `ACCESS_TOKEN_EXPIRES_ON`, or for AWS `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
        /// `AWS_SESSION_TOKEN` and `AWS_CREDENTIAL_EXPIRATION`.
        case env
    }

    /// `onRotate:`.
    public enum RotateAction: Sendable, Equatable {
        /// `{ command: [PATH, ARG…], timeoutSeconds: N }`: run without a shell (default timeout 30 s).
        case command([String], timeoutSeconds: Int)
        /// `{ signal: HUP, pidFile: PATH }`: send the signal to the process whose pid the file holds.
        case signal(name: String, pidFile: String)
    }
}
