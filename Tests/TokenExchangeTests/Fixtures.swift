import Foundation
import TokenExchange

/// Golden inputs for the exchange core. The test target declares no resources, so
/// the fixtures live here as literals rather than in `Fixtures/*.json`.
enum Fixtures {
    /// The instant the recorded Entra answers were received.
    static let now = Date(timeIntervalSince1970: 1_795_914_123)  // 2026-11-29T01:02:03Z

    static let tenantId = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    static let clientId = "0f8c3e1a-5b7d-4a2e-9c61-3d2b1e4f5a6b"

    static let issuer = "https://oidc.prod-aks.azure.com/8a1b2c3d-0000-4e5f-9a8b-7c6d5e4f3a2b/"
    static let subject = "system:serviceaccount:payments:ledger-writer"
    static let audience = "api://AzureADTokenExchange"
    static let origin = "/var/run/secrets/azure/tokens/azure-identity-token"

    /// A compact JWS whose payload is exactly `payload` (no signature check is made).
    static func jwt(payload: String, header: String = #"{"alg":"RS256","kid":"k1","typ":"JWT"}"#) -> String {
        "\(Base64URL.encode(Data(header.utf8))).\(Base64URL.encode(Data(payload.utf8))).c2lnbmF0dXJlLW5vdC1jaGVja2Vk"
    }

    /// A projected service-account token as kubelet writes it for Azure Workload Identity.
    static func serviceAccountJWT(issuedAt: Date = now.addingTimeInterval(-600), lifetime: TimeInterval = 3600) -> String {
        let iat = Int(issuedAt.timeIntervalSince1970)
        return jwt(
            payload: """
                {"aud":["\(audience)"],"exp":\(iat + Int(lifetime)),"iat":\(iat),"iss":"\(issuer)",\
                "kubernetes.io":{"namespace":"payments","serviceaccount":{"name":"ledger-writer","uid":"5d0c7a8e-1111-4c3b-8f2e-0a9b8c7d6e5f"}},\
                "nbf":\(iat),"sub":"\(subject)"}
                """)
    }

    static func assertion(issuedAt: Date = now.addingTimeInterval(-600), lifetime: TimeInterval = 3600) -> Assertion {
        try! Assertion(jwt: serviceAccountJWT(issuedAt: issuedAt, lifetime: lifetime), origin: origin, loadedAt: now)
    }

    static let configuration = try! EntraConfiguration(tenantId: tenantId, clientId: clientId)
    static let scope = Scope("https://storage.azure.com/.default")

    static func response(
        _ status: Int, _ body: String, headers: [HeaderField] = [HeaderField("Content-Type", "application/json; charset=utf-8")]
    ) -> UpstreamResponse {
        UpstreamResponse(status: status, headers: headers, body: Array(body.utf8))
    }

    // MARK: Entra answers (shapes as sent by login.microsoftonline.com)

    static let accessToken =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIsIng1dCI6ImZha2UifQ.eyJhdWQiOiJodHRwczovL3N0b3JhZ2UuYXp1cmUuY29tIn0.ZmFrZS1zaWduYXR1cmU"

    static let success = """
        {"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"\(accessToken)"}
        """
    static let successWithRefreshIn = """
        {"token_type":"Bearer","expires_in":86399,"ext_expires_in":86399,"refresh_in":43199,"access_token":"\(accessToken)"}
        """
    static let successAsStrings = """
        {"token_type":"Bearer","expires_in":"3599","ext_expires_in":"7199","refresh_in":"1799","access_token":"\(accessToken)"}
        """
    static let successWithoutAccessToken = """
        {"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599}
        """

    static let traceId = "9b3e0a51-2f7c-4d8e-a1b2-7c6d5e4f3a00"
    static let correlationId = "e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e6f7"

    /// An Entra error body; `description` is the text before the `\r\nTrace ID:` trailer.
    static func entraError(_ code: Int, error: String = "invalid_client", description: String) -> String {
        """
        {"error":"\(error)","error_description":"AADSTS\(code): \(description)\\r\\nTrace ID: \(traceId)\\r\\nCorrelation ID: \(correlationId)\\r\\nTimestamp: 2026-11-29 01:02:03Z",\
        "error_codes":[\(code)],"timestamp":"2026-11-29 01:02:03Z","trace_id":"\(traceId)","correlation_id":"\(correlationId)",\
        "error_uri":"https://login.microsoftonline.com/error?code=\(code)"}
        """
    }

    static let noMatchingFederatedIdentity = entraError(
        70021,
        description:
            "No matching federated identity record found for presented assertion. Assertion Issuer: 'https://issuer.example'. "
            + "Assertion Subject: 'system:serviceaccount:default:default'. Assertion Audience: 'api://AzureADTokenExchange'. "
            + "https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation")
    static let noMatchingIssuer = entraError(
        700211,
        description:
            "No matching federated identity record found for presented assertion issuer 'https://issuer.example'. "
            + "Please note that the matching is done using a case-sensitive comparison.")
    static let noMatchingAudience = entraError(
        700212,
        description:
            "No matching federated identity record found for presented assertion audience 'api://AzureADTokenExchange'. "
            + "Please note that the matching is done using a case-sensitive comparison.")
    static let noMatchingSubject = entraError(
        700213,
        description:
            "No matching federated identity record found for presented assertion subject 'system:serviceaccount:default:default'. "
            + "Please note that the matching is done using a case-sensitive comparison.")
    static let assertionOutOfTimeRange = entraError(
        700024,
        description:
            "Client assertion is not within its valid time range. Current time: 2026-11-29T01:02:03.0000000Z, "
            + "assertion valid from 2026-11-28T00:00:00.0000000Z, expiry time of assertion 2026-11-28T01:00:00.0000000Z. "
            + "Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .")
    static let applicationNotFound = entraError(
        700016, error: "unauthorized_client",
        description:
            "Application with identifier '\(clientId)' was not found in the directory 'Contoso'. This can happen if the application "
            + "has not been installed by the administrator of the tenant or consented to by any user in the tenant. "
            + "You may have sent your authentication request to the wrong tenant.")
    static let transientServerError = entraError(
        90033, error: "temporarily_unavailable",
        description:
            "A transient error has occurred. Please try again.")

    static let serviceUnavailableHTML = "<html><head><title>Service Unavailable</title></head><body>Service Unavailable</body></html>"
    static let tooManyRequestsText = "Too Many Requests"
}
