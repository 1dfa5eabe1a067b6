import TokenBrokerProtocol

/// The App Service and IMDS protocols' differences, as the daemon's compatibility endpoints
/// (`CompatEndpoints`, `Flavor` in BrokerApp) answer them: the relay's answers must be the
/// same bytes an SDK gets from the daemon, so these are copies of those rules, kept beside
/// each other. docs/protocol.md#compatibility-endpoints is the contract for both.
enum RelayFlavor {
    case appService
    /// App Service 2017-09-01 (`MSI_ENDPOINT`/`MSI_SECRET`).
    case appService2017
    case imds

    /// A token, with every number as a string as the real services send it.
    ///
    /// `not_before` is the time of the answer: the socket protocol does not carry the time
    /// the token was issued (the daemon's endpoints use the exchange time; SDKs do not read it).
    func token(_ response: BrokerResponse, resource: String, clientId: String?, now: Int64) -> RelayHTTPResponse {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("access_token", response.token ?? "")
        if self == .appService2017 {
            writer.field("expires_on", ManagedIdentityVersions.legacyExpiresOn(response.expiresOn ?? now))
        } else {
            writer.field("client_id", clientId)
            if self == .imds {
                writer.field("refresh_token", "")
                writer.field("expires_in", String(max(0, response.expiresIn ?? 0)))
            }
            writer.field("expires_on", String(response.expiresOn ?? now))
            writer.field("not_before", String(now))
        }
        writer.field("resource", resource)
        writer.field("token_type", response.tokenType ?? "Bearer")
        writer.endObject()
        return RelayHTTPResponse(status: 200, body: writer.text)
    }

    /// The relay's own error code: the broker socket cannot be reached or did not answer
    /// (503, so SDKs retry).
    static let brokerUnavailable = "broker_unavailable"

    /// The HTTP status a broker error gets (the daemon's compatibility endpoints' table).
    static func status(for code: String) -> Int {
        code == brokerUnavailable ? 503 : ManagedIdentityError.status(for: code)
    }

    /// A broker error in this protocol's shape and status.
    func error(_ error: WireError) -> RelayHTTPResponse {
        var response = self.error(Self.status(for: error.code), error.code, error.message)
        if let retryAfter = error.retryAfter { response.headers.append((name: "Retry-After", value: String(retryAfter))) }
        return response
    }

    /// `{"error","error_description"}` for IMDS; `{"statusCode","message","error"}` for App Service.
    func error(_ status: Int, _ code: String, _ message: String) -> RelayHTTPResponse {
        RelayHTTPResponse(
            status: status, body: ManagedIdentityError.body(self == .imds ? .imds : .appService, status: status, code: code, message: message))
    }

    /// The AWS container-credentials protocol's error: `{"code","message"}`.
    static func awsError(_ status: Int, _ code: String, _ message: String, retryAfter: Int? = nil) -> RelayHTTPResponse {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("code", code)
        writer.field("message", message)
        writer.endObject()
        var response = RelayHTTPResponse(status: status, body: writer.text)
        if let retryAfter { response.headers.append((name: "Retry-After", value: String(retryAfter))) }
        return response
    }

    /// The AWS SDKs' credentials document.
    static func awsCredentials(_ credentials: AWSCredentialsObject) -> RelayHTTPResponse {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("AccessKeyId", credentials.accessKeyId)
        writer.field("SecretAccessKey", credentials.secretAccessKey)
        writer.field("Token", credentials.sessionToken)
        writer.field("Expiration", credentials.expiration)
        writer.field("AccountId", credentials.accountId)
        writer.endObject()
        return RelayHTTPResponse(status: 200, body: writer.text)
    }
}
