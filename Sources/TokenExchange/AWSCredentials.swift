public import FoundationEssentials
import Glibc

/// Temporary AWS credentials, as `AssumeRoleWithWebIdentity` returns them.
///
/// Its `description` never shows the secret parts.
public struct AWSCredentials: Sendable, Equatable, CustomStringConvertible {
    /// `AccessKeyId` (not secret on its own, but logged only at debug).
    public var accessKeyId: String
    /// `SecretAccessKey`. Never log it.
    public var secretAccessKey: String
    /// `SessionToken`. Never log it.
    public var sessionToken: String
    /// `Expiration`.
    public var expiration: Date
    /// The account of the assumed role, when known (from its ARN).
    public var accountId: String?

    /// Creates credentials.
    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String, expiration: Date, accountId: String? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
        self.accountId = accountId
    }

    public var description: String {
        "AWSCredentials(accessKeyId: \(accessKeyId.prefix(4))…, expiration: \(Int(expiration.timeIntervalSince1970)))"
    }
}
