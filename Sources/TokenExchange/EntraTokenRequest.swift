/// Builds the Entra v2 client-credentials request with a federated client
/// assertion — the same fields azure-identity's `WorkloadIdentityCredential` sends.
public enum EntraTokenRequest {
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    public static let clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

    /// The form fields in the order we send them.
    public static func formFields(configuration: EntraConfiguration, scope: Scope, assertion: Assertion) -> [(String, String)] {
        [
            ("client_id", configuration.clientId),
            ("scope", scope.value),
            ("client_assertion_type", clientAssertionType),
            ("client_assertion", assertion.jwt),
            ("grant_type", "client_credentials"),
        ]
    }

    /// The complete request to `{authority}/{tenant}/oauth2/v2.0/token`.
    public static func make(configuration: EntraConfiguration, scope: Scope, assertion: Assertion) -> UpstreamRequest {
        let body = FormEncoding.encode(formFields(configuration: configuration, scope: scope, assertion: assertion))
        return UpstreamRequest(
            method: "POST",
            url: configuration.tokenEndpoint,
            headers: [
                HeaderField("Content-Type", "application/x-www-form-urlencoded"),
                HeaderField("Accept", "application/json"),
            ],
            body: Array(body.utf8)
        )
    }
}
