public import FoundationEssentials
import Glibc

/// A token issued by a token service, with the times the cache needs.
///
/// Its `description` never shows the token itself.
public struct AccessToken: Sendable, CustomStringConvertible {
    /// The bearer token. Hand it to the caller; never log it. (Made from `text` on each
    /// read: keep it rather than read it twice.)
    public var value: String { text.string }
    /// The token, kept compact (`TokenText`).
    let text: TokenText
    /// Usually `Bearer`.
    public let tokenType: String
    /// When the token service issued it (our wall clock at receipt).
    public let issuedAt: Date
    /// When it expires (`issuedAt + expires_in`).
    public let expiresAt: Date
    /// Entra's `refresh_in`: when to refresh, if the service said so.
    public let refreshAt: Date?
    /// Entra's `ext_expires_in`: how long the token is accepted during an outage.
    public let extendedExpiresAt: Date?
    /// For AWS identities: the credentials (`value` then holds the session token).
    public var awsCredentials: AWSCredentials? { aws?.credentials }
    /// Out of line: a cache holds thousands of tokens, most of them not AWS ones.
    private let aws: AWSCredentialsBox?

    /// Creates a token with its times.
    public init(
        value: String,
        tokenType: String = "Bearer",
        issuedAt: Date,
        expiresAt: Date,
        refreshAt: Date? = nil,
        extendedExpiresAt: Date? = nil,
        awsCredentials: AWSCredentials? = nil
    ) {
        self.text = TokenText(value)
        self.tokenType = tokenType
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.refreshAt = refreshAt
        self.extendedExpiresAt = extendedExpiresAt
        self.aws = awsCredentials.map(AWSCredentialsBox.init)
    }

    /// Lifetime as issued.
    public var lifetime: TimeInterval { expiresAt.timeIntervalSince(issuedAt) }

    public var description: String {
        "AccessToken(type: \(tokenType), expiresAt: \(Int(expiresAt.timeIntervalSince1970)), length: \(text.utf8Count))"
    }
}

/// Holds an `AccessToken`'s AWS credentials.
private final class AWSCredentialsBox: Sendable {
    let credentials: AWSCredentials

    init(_ credentials: AWSCredentials) {
        self.credentials = credentials
    }
}
