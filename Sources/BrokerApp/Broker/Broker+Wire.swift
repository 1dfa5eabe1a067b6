import AssertionSources
import FoundationEssentials
import TokenBrokerProtocol
import TokenCache
import TokenExchange

/// Turning what the cache and the exchanges return into wire types.
extension Broker {
    /// The answer carrying `cached` to the request with `id`.
    func response(for cached: CachedToken, id: RequestID?) -> BrokerResponse {
        if let aws = cached.token.awsCredentials {
            return BrokerResponse(
                id: id, ok: true, expiresOn: Int64(cached.token.expiresAt.timeIntervalSince1970), expiresIn: cached.expiresIn.components.seconds,
                identity: cached.key.identity, scope: cached.key.scope.value, credentials: Self.wireCredentials(aws))
        }
        // A pod's token names its service account and app rather than the cache's key.
        let pod = pods?.registration(of: cached.key.identity)
        return BrokerResponse(
            id: id, ok: true, token: cached.token.value, tokenType: cached.token.tokenType,
            expiresOn: Int64(cached.token.expiresAt.timeIntervalSince1970),
            expiresIn: cached.expiresIn.components.seconds,
            identity: pod == nil ? cached.key.identity : nil, scope: cached.key.scope.value,
            serviceAccount: pod?.account.description, clientId: pod?.clientId)
    }

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

extension WireError {
    /// The code as the enum (nil for a code this build does not know): decisions compare
    /// this, not strings.
    var kind: WireErrorCode? { WireErrorCode(rawValue: code) }
}
