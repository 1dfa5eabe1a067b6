/// Which role to assume with AWS STS `AssumeRoleWithWebIdentity`, and where.
public struct AWSSTSConfiguration: Sendable, Equatable {
    /// The role to assume, `arn:aws:iam::123456789012:role/name` (other partitions too:
    /// `aws-cn`, `aws-us-gov`, …; a role path is allowed). Required.
    public var roleArn: String
    /// The role session name template; `{identity}` is replaced by the broker identity's
    /// name. The result must match `[\w+=,.@-]{2,64}`. Default `tokenbroker-{identity}`.
    public var sessionName: String
    /// `DurationSeconds`, 900…43200 (the role's maximum session duration must allow it).
    /// Default 3600.
    public var durationSeconds: Int
    /// The region whose STS endpoint is called. Default `us-east-1`.
    public var region: String
    /// The STS endpoint. Default `https://sts.{region}.amazonaws.com` (`….amazonaws.com.cn`
    /// for `cn-` regions); the legacy global `https://sts.amazonaws.com` only when set here.
    /// Plain `http://` is accepted only to a loopback address (a local test service).
    public var endpoint: String

    /// The default session name template.
    public static let defaultSessionName = "tokenbroker-{identity}"
    /// The default session duration, one hour.
    public static let defaultDurationSeconds = 3600
    /// The default region.
    public static let defaultRegion = "us-east-1"
    /// The range STS accepts for `DurationSeconds`.
    public static let durationRange = 900...43200

    /// Creates a configuration, checking every field once.
    ///
    /// Throws an `AWSSTSConfigurationError` naming the first bad field. The session name is
    /// checked as far as it can be without an identity name (its literal parts and
    /// placeholders); `sessionName(forIdentity:)` checks the result.
    public init(
        roleArn: String,
        sessionName: String = Self.defaultSessionName,
        durationSeconds: Int = Self.defaultDurationSeconds,
        region: String = Self.defaultRegion,
        endpoint: String? = nil
    ) throws(AWSSTSConfigurationError) {
        guard Self.isRoleARN(roleArn) else {
            throw AWSSTSConfigurationError(
                "roleArn must be an IAM role ARN like arn:aws:iam::123456789012:role/name, got '\(RFC8693Configuration.printable(roleArn))'")
        }
        let literal = sessionName.replacingAll("{identity}", with: "")
        guard !literal.contains("{"), !literal.contains("}") else {
            throw AWSSTSConfigurationError(
                "sessionName may use only the placeholder {identity}, got '\(RFC8693Configuration.printable(sessionName))'")
        }
        guard literal.allSatisfy(Self.isSessionNameCharacter) else {
            throw AWSSTSConfigurationError(
                "sessionName may contain only letters, digits and _+=,.@- besides {identity}, got '\(RFC8693Configuration.printable(sessionName))'")
        }
        guard literal.count <= 64, sessionName.contains("{identity}") || literal.count >= 2 else {
            throw AWSSTSConfigurationError("sessionName must be 2 to 64 characters, got \(literal.count)")
        }
        guard Self.durationRange.contains(durationSeconds) else {
            throw AWSSTSConfigurationError("durationSeconds must be 900...43200 (15 min to 12 h), got \(durationSeconds)")
        }
        guard Self.isRegion(region) else {
            throw AWSSTSConfigurationError("region must be an AWS region name like us-east-1, got '\(RFC8693Configuration.printable(region))'")
        }
        let url: String
        switch EndpointURL.validate(endpoint ?? Self.defaultEndpoint(region: region)) {
        case .success(let valid): url = valid
        case .failure(let failure):
            throw AWSSTSConfigurationError("endpoint \(failure.reason), got '\(EndpointURL.redacted(endpoint ?? ""))'")
        }
        self.roleArn = roleArn
        self.sessionName = sessionName
        self.durationSeconds = durationSeconds
        self.region = region
        self.endpoint = url
    }

    /// `https://sts.{region}.amazonaws.com`, or `….amazonaws.com.cn` in the China partition.
    public static func defaultEndpoint(region: String) -> String {
        region.hasPrefix("cn-") ? "https://sts.\(region).amazonaws.com.cn" : "https://sts.\(region).amazonaws.com"
    }

    /// The role session name for identity `identity`: the template with `{identity}` replaced.
    ///
    /// Throws when the result is not 2–64 characters of `[\w+=,.@-]` (STS would answer
    /// ValidationError); the message names `sessionName` and the identity.
    public func sessionName(forIdentity identity: String) throws(AWSSTSConfigurationError) -> String {
        let name = sessionName.replacingAll("{identity}", with: identity)
        guard (2...64).contains(name.count), name.allSatisfy(Self.isSessionNameCharacter) else {
            throw AWSSTSConfigurationError(
                "sessionName '\(RFC8693Configuration.printable(sessionName))' gives '\(RFC8693Configuration.printable(name))' for identity "
                    + "'\(RFC8693Configuration.printable(identity))', which is not 2 to 64 characters of letters, digits and _+=,.@-")
        }
        return name
    }

    /// `\w` in AWS's pattern is ASCII letters, digits and underscore.
    static func isSessionNameCharacter(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || "_+=,.@-".contains(c))
    }

    /// `arn:aws[-a-z]*:iam::<12 digits>:role/[path/]name`.
    static func isRoleARN(_ arn: String) -> Bool {
        guard arn.count <= 2048 else { return false }
        let parts = arn.split(separator: ":", maxSplits: 5, omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "arn", parts[2] == "iam", parts[3].isEmpty else { return false }
        let partition = parts[1]
        guard partition.hasPrefix("aws"), partition.allSatisfy({ $0.isASCII && ($0.isLowercase || $0 == "-") }) else { return false }
        guard parts[4].count == 12, parts[4].allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
        let resource = parts[5]
        guard resource.hasPrefix("role/") else { return false }
        let path = resource.dropFirst("role/".count)
        guard let name = path.split(separator: "/", omittingEmptySubsequences: false).last,
            (1...64).contains(name.count), name.allSatisfy(isSessionNameCharacter)
        else { return false }
        // Path segments: printable ASCII without spaces (IAM allows \u0021-\u007F).
        return path.allSatisfy { $0.isASCII && $0 > " " && $0 != "\u{7F}" }
    }

    /// Lowercase letters, digits and single hyphens, starting with a letter and ending with
    /// a digit: `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`, `us-isob-east-1`.
    static func isRegion(_ region: String) -> Bool {
        guard (4...32).contains(region.count), let first = region.first, first.isLetter, let last = region.last, last.isNumber,
            !region.contains("--")
        else { return false }
        return region.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }
    }
}

/// An invalid AWS STS setting; the message starts with the field name.
public struct AWSSTSConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong.
    public let message: String
    /// Creates an error.
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension String {
    /// Every occurrence of `target` replaced by `replacement`.
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = Substring(self)
        while let start = rest.firstRange(of: target) {
            result += rest[..<start.lowerBound]
            result += replacement
            rest = rest[start.upperBound...]
        }
        return result + rest
    }
}
