import TokenBrokerProtocol

/// The App Service and IMDS protocols as the relay answers them: the table is
/// `ManagedIdentityFlavor`, shared with the daemon's compatibility endpoints so that an SDK
/// gets the same bytes from both; here the relay's own error and the AWS shapes.
typealias RelayFlavor = ManagedIdentityFlavor

extension ManagedIdentityFlavor {
    /// A token, with every number as a string as the real services send it.
    ///
    /// `not_before` is the time of the answer: the socket protocol does not carry the time
    /// the token was issued (the daemon's endpoints use the exchange time; SDKs do not read it).
    func token(_ response: BrokerResponse, resource: String, clientId: String?, now: Int64) -> RelayHTTPResponse {
        RelayHTTPResponse(
            tokenAnswer(
                accessToken: response.token ?? "", expiresOn: response.expiresOn ?? now, expiresIn: response.expiresIn ?? 0, notBefore: now,
                clientId: clientId, resource: resource, tokenType: response.tokenType ?? "Bearer"))
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
        RelayHTTPResponse(errorAnswer(error, status: Self.status(for: error.code)))
    }

    /// `{"error","error_description"}` for IMDS; `{"statusCode","message","error"}` for App Service.
    func error(_ status: Int, _ code: String, _ message: String) -> RelayHTTPResponse {
        RelayHTTPResponse(errorAnswer(status, code, message))
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

extension RelayHTTPResponse {
    init(_ answer: ManagedIdentityFlavor.Answer) {
        self.init(status: answer.status, body: answer.body, headers: answer.headers)
    }
}
