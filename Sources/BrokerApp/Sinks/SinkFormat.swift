import FoundationEssentials
import Glibc
import TokenBrokerProtocol
import TokenCache
import TokenExchange

extension SinkSettings.Format {
    /// The file's bytes for `cached`. Tokens go into line-based formats only when they hold
    /// no character that would end or break the line (a token service's answer is untrusted).
    func render(_ cached: CachedToken) throws(SinkError) -> [UInt8] {
        let token = cached.token
        let value = token.value  // made on each read (`AccessToken.value`)
        let expiresOn = Int64(token.expiresAt.timeIntervalSince1970)
        switch self {
        case .token:
            try Self.check(value, "token")
            return Array(value.utf8)
        case .header:
            try Self.check(value, "header")
            return Array("Authorization: Bearer \(value)\n".utf8)
        case .json:
            var response = BrokerResponse(
                id: nil, ok: true, token: value, tokenType: token.tokenType, expiresOn: expiresOn,
                expiresIn: cached.expiresIn.components.seconds,
                identity: cached.key.identity, scope: cached.key.scope.value)
            if let aws = token.awsCredentials {
                response = BrokerResponse(
                    id: nil, ok: true, expiresOn: expiresOn, expiresIn: cached.expiresIn.components.seconds, identity: cached.key.identity,
                    scope: cached.key.scope.value, credentials: Broker.wireCredentials(aws))
            }
            return response.jsonBytes() + [UInt8(ascii: "\n")]
        case .awsCredentials:
            guard let aws = token.awsCredentials else { throw SinkError(.unsafeToken, "the identity gave no AWS credentials") }
            for part in [aws.accessKeyId, aws.secretAccessKey, aws.sessionToken] { try Self.check(part, "aws-credentials") }
            return Array(
                """
                [default]
                aws_access_key_id = \(aws.accessKeyId)
                aws_secret_access_key = \(aws.secretAccessKey)
                aws_session_token = \(aws.sessionToken)

                """.utf8)
        case .env:
            if let aws = token.awsCredentials {
                for part in [aws.accessKeyId, aws.secretAccessKey, aws.sessionToken] { try Self.check(part, "env") }
                return Array(
                    """
                    AWS_ACCESS_KEY_ID=\(aws.accessKeyId)
                    AWS_SECRET_ACCESS_KEY=\(aws.secretAccessKey)
                    AWS_SESSION_TOKEN=\(aws.sessionToken)
                    AWS_CREDENTIAL_EXPIRATION=\(Timestamp.iso8601(aws.expiration))

                    """.utf8)
            }
            try Self.check(value, "env")
            return Array("ACCESS_TOKEN=\(value)\nACCESS_TOKEN_EXPIRES_ON=\(expiresOn)\n".utf8)
        }
    }

    /// Printable ASCII with no space, quote, backslash, `$` or backtick: safe unquoted in a
    /// header line, an ini value and a shell or systemd `NAME=value` line. JWTs, opaque
    /// Entra tokens and AWS keys are all of this kind.
    private static func check(_ value: String, _ format: String) throws(SinkError) {
        let unsafe = value.utf8.contains { byte in
            byte <= 0x20 || byte >= 0x7f || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") || byte == UInt8(ascii: "\\")
                || byte == UInt8(ascii: "$") || byte == UInt8(ascii: "`")
        }
        guard !unsafe, !value.isEmpty else {
            throw SinkError(.unsafeToken, "the token holds characters (or is empty) that format \(format) cannot carry safely; use format json")
        }
    }
}
