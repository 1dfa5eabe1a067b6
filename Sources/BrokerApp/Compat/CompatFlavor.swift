import BrokerServer
import FoundationEssentials
import Glibc
import TokenBrokerProtocol
import TokenCache
import TokenExchange

/// The managed-identity protocols' differences: token fields and error shapes.
enum Flavor {
    /// App Service 2019-08-01.
    case appService
    /// App Service 2017-09-01 (`MSI_ENDPOINT`/`MSI_SECRET`).
    case appService2017
    case imds

    /// A token, with every number as a string as the real services send it; 2017-09-01
    /// sends `expires_on` as a UTC date and no `client_id` or `not_before`.
    func token(_ cached: CachedToken, resource: String, clientId: String?) -> HTTPServiceResponse {
        let expiresOn = Int64(cached.token.expiresAt.timeIntervalSince1970)
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("access_token", cached.token.value)
        if self == .appService2017 {
            writer.field("expires_on", ManagedIdentityVersions.legacyExpiresOn(expiresOn))
        } else {
            writer.field("client_id", clientId)
            if self == .imds {
                writer.field("refresh_token", "")
                writer.field("expires_in", String(max(0, cached.expiresIn.components.seconds)))
            }
            writer.field("expires_on", String(expiresOn))
            writer.field("not_before", String(Int64(cached.token.issuedAt.timeIntervalSince1970)))
        }
        writer.field("resource", resource)
        writer.field("token_type", cached.token.tokenType)
        writer.endObject()
        return HTTPServiceResponse(status: 200, body: writer.text)
    }

    /// The HTTP status a broker error gets on the compatibility endpoints.
    static func status(for code: String) -> Int {
        ManagedIdentityError.status(for: code)
    }

    /// A broker error in this protocol's shape and status.
    func error(_ error: WireError) -> HTTPServiceResponse {
        var response = self.error(Self.status(for: error.code), error.code, error.message)
        if let retryAfter = error.retryAfter { response.headers.append((name: "Retry-After", value: String(retryAfter))) }
        return response
    }

    /// `{"error","error_description"}` for IMDS; `{"statusCode","message","error"}` for App Service.
    func error(_ status: Int, _ code: String, _ message: String) -> HTTPServiceResponse {
        HTTPServiceResponse(
            status: status, body: ManagedIdentityError.body(self == .imds ? .imds : .appService, status: status, code: code, message: message))
    }
}
