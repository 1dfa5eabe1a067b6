import TokenBrokerProtocol
import TokenExchange

/// Turning what the cache and the exchanges return into wire types.
extension Broker {
    /// AWS credentials as the wire carries them.
    static func wireCredentials(_ aws: AWSCredentials) -> AWSCredentialsObject {
        AWSCredentialsObject(
            accessKeyId: aws.accessKeyId, secretAccessKey: aws.secretAccessKey, sessionToken: aws.sessionToken,
            expiration: Timestamp.iso8601(aws.expiration), accountId: aws.accountId)
    }

    /// A failed exchange as the caller sees it: code, message, retry advice, upstream details.
    static func wireError(_ error: TokenExchangeError) -> WireError {
        WireError(
            code: error.code.rawValue, message: error.message, retryable: error.isRetryable,
            retryAfter: error.retryAfter.map { Int($0.components.seconds) },
            upstream: error.upstream.map {
                UpstreamErrorDetails(status: $0.status, codes: $0.codes, error: $0.error, traceId: $0.traceId, correlationId: $0.correlationId)
            })
    }
}
