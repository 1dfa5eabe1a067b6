import BrokerServer
import FoundationEssentials
import TokenBrokerProtocol
import TokenCache
import TokenExchange

/// The managed-identity protocols' differences: the table is `ManagedIdentityFlavor`
/// (shared with the relay); this is how the endpoints hand its answers to the server.
typealias Flavor = ManagedIdentityFlavor

extension ManagedIdentityFlavor {
    /// A cached token in this protocol's shape (`not_before`: when it was issued).
    func token(_ cached: CachedToken, resource: String, clientId: String?) -> HTTPServiceResponse {
        HTTPServiceResponse(
            tokenAnswer(
                accessToken: cached.token.value, expiresOn: Int64(cached.token.expiresAt.timeIntervalSince1970),
                expiresIn: cached.expiresIn.components.seconds, notBefore: Int64(cached.token.issuedAt.timeIntervalSince1970), clientId: clientId,
                resource: resource, tokenType: cached.token.tokenType))
    }

    /// The HTTP status a broker error gets on the compatibility endpoints.
    static func status(for code: String) -> Int {
        ManagedIdentityError.status(for: code)
    }

    /// A broker error in this protocol's shape and status.
    func error(_ error: WireError) -> HTTPServiceResponse {
        HTTPServiceResponse(errorAnswer(error))
    }

    /// `{"error","error_description"}` for IMDS; `{"statusCode","message","error"}` for App Service.
    func error(_ status: Int, _ code: String, _ message: String) -> HTTPServiceResponse {
        HTTPServiceResponse(errorAnswer(status, code, message))
    }
}

extension HTTPServiceResponse {
    init(_ answer: ManagedIdentityFlavor.Answer) {
        self.init(status: answer.status, body: answer.body, headers: answer.headers)
    }
}
