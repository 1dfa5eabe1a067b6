/// The managed-identity protocols the compatibility endpoints speak, and how each writes a
/// token and an error: one table for the daemon's endpoints (`CompatEndpoints`) and
/// `tokenbroker relay`, whose answers must be the bytes an SDK gets from the daemon.
/// docs/protocol.md#compatibility-endpoints is the contract for both.
public enum ManagedIdentityFlavor: Sendable, Equatable {
    /// App Service 2019-08-01.
    case appService
    /// App Service 2017-09-01 (`MSI_ENDPOINT`/`MSI_SECRET`).
    case appService2017
    case imds

    /// One answer: its HTTP status, JSON body and extra header fields.
    public struct Answer: Sendable {
        public var status: Int
        public var body: String
        public var headers: [(name: String, value: String)]
    }

    /// A token, with every number as a string as the real services send it; 2017-09-01
    /// sends `expires_on` as a UTC date and no `client_id` or `not_before`; IMDS adds
    /// `refresh_token` and `expires_in` (negative counts as 0).
    public func tokenAnswer(
        accessToken: String, expiresOn: Int64, expiresIn: Int64, notBefore: Int64, clientId: String?, resource: String, tokenType: String
    ) -> Answer {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("access_token", accessToken)
        if self == .appService2017 {
            writer.field("expires_on", ManagedIdentityVersions.legacyExpiresOn(expiresOn))
        } else {
            writer.field("client_id", clientId)
            if self == .imds {
                writer.field("refresh_token", "")
                writer.field("expires_in", String(max(0, expiresIn)))
            }
            writer.field("expires_on", String(expiresOn))
            writer.field("not_before", String(notBefore))
        }
        writer.field("resource", resource)
        writer.field("token_type", tokenType)
        writer.endObject()
        return Answer(status: 200, body: writer.text, headers: [])
    }

    /// A broker error in this protocol's shape, with `status` (by default the one its code
    /// gets here, `ManagedIdentityError.status`) and `Retry-After` when the error says.
    public func errorAnswer(_ error: WireError, status: Int? = nil) -> Answer {
        var answer = errorAnswer(status ?? ManagedIdentityError.status(for: error.code), error.code, error.message)
        if let retryAfter = error.retryAfter { answer.headers.append((name: "Retry-After", value: String(retryAfter))) }
        return answer
    }

    /// `{"error","error_description"}` for IMDS; `{"statusCode","message","error"}` for App Service.
    public func errorAnswer(_ status: Int, _ code: String, _ message: String) -> Answer {
        Answer(
            status: status, body: ManagedIdentityError.body(self == .imds ? .imds : .appService, status: status, code: code, message: message),
            headers: [])
    }
}
