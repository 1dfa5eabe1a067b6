import FoundationEssentials
import Glibc
import NIOHTTP1

/// One AADSTS rejection, rendered exactly as Entra's v2 token endpoint renders it.
///
/// Descriptions follow the wording Entra uses for each code; the trailer (trace id,
/// correlation id, timestamp) is added when the response is built.
struct EntraError: Error, Sendable {
    /// The AADSTS number, e.g. 70021.
    var code: Int
    /// The OAuth `error` value: `invalid_request`, `invalid_client`, `unauthorized_client`, …
    var error: String
    /// The text after `AADSTSnnnn: `.
    var message: String
    /// 400, or 401 for `invalid_client`.
    var status: HTTPResponseStatus

    init(_ code: Int, _ error: String, _ message: String) {
        self.code = code
        self.error = error
        self.message = message
        self.status = error == "invalid_client" ? .unauthorized : .badRequest
    }

    /// The JSON body Entra sends with a rejection.
    struct Body: Codable, Sendable {
        var error: String
        var errorDescription: String
        var errorCodes: [Int]
        var timestamp: String
        var traceId: String
        var correlationId: String
        var errorURI: String

        enum CodingKeys: String, CodingKey {
            case error, timestamp
            case errorDescription = "error_description"
            case errorCodes = "error_codes"
            case traceId = "trace_id"
            case correlationId = "correlation_id"
            case errorURI = "error_uri"
        }
    }

    /// The response, with Entra's `\r\n`-separated trailer in the description.
    func response(traceId: String, correlationId: String, now: Date) -> DevHTTPResponse {
        let stamp = EntraTime.trailer(now)
        let body = Body(
            error: error,
            errorDescription: "AADSTS\(code): \(message)\r\nTrace ID: \(traceId)\r\nCorrelation ID: \(correlationId)\r\nTimestamp: \(stamp)",
            errorCodes: [code],
            timestamp: stamp,
            traceId: traceId,
            correlationId: correlationId,
            errorURI: "https://login.microsoftonline.com/error?code=\(code)")
        var response = DevHTTPResponse.json(body, status: status)
        if status == .unauthorized {
            // RFC 6749 §5.2: a 401 for client authentication carries a challenge.
            response.headers.add(name: "WWW-Authenticate", value: "Bearer error=\"\(error)\"")
        }
        return response
    }
}

extension EntraError {
    private static let federationDocs = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"

    static func tenantNotFound(_ tenant: String) -> EntraError {
        EntraError(
            90002, "invalid_request",
            "Tenant '\(tenant)' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        )
    }

    static func missingParameter(_ name: String) -> EntraError {
        EntraError(900144, "invalid_request", "The request body must contain the following parameter: '\(name)'.")
    }

    static func unsupportedGrantType(_ grantType: String) -> EntraError {
        EntraError(70003, "unsupported_grant_type", "The app requested an unsupported grant type '\(grantType)'.")
    }

    static func applicationNotFound(clientId: String, tenant: String) -> EntraError {
        EntraError(
            700016, "unauthorized_client",
            "Application with identifier '\(clientId)' was not found in the directory '\(tenant)'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        )
    }

    static func scopeWithoutDefault(_ scope: String) -> EntraError {
        EntraError(
            1002012, "invalid_scope",
            "The provided value for scope \(scope) is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
        )
    }

    static func invalidScope(_ scope: String) -> EntraError {
        EntraError(
            70011, "invalid_scope",
            "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope \(scope) is not valid."
        )
    }

    static let missingCredential = EntraError(
        7000218, "invalid_client",
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")

    static let invalidSecret = EntraError(
        7000215, "invalid_client",
        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app."
    )

    static func unsupportedAssertionType(_ type: String) -> EntraError {
        EntraError(
            7000216, "invalid_client",
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type. The client_assertion_type '\(type)' is not supported."
        )
    }

    static let malformedJWT = EntraError(50027, "invalid_request", "JWT token is invalid or malformed.")

    static func notWithinValidTimeRange(now: Date, validFrom: Date, expiry: Date) -> EntraError {
        EntraError(
            700024, "invalid_client",
            "Client assertion is not within its valid time range. Current time: \(EntraTime.precise(now)), assertion valid from \(EntraTime.precise(validFrom)), expiry time of assertion \(EntraTime.precise(expiry)). Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
        )
    }

    static func lifetimeTooLong(seconds: Int) -> EntraError {
        EntraError(
            70023, "invalid_client",
            "Client assertion lifetime is too long. The assertion is valid for \(seconds) seconds; the maximum allowed lifetime of a federated client assertion is 25 hours (90000 seconds)."
        )
    }

    static func noMatchingFederatedIdentity(issuer: String, subject: String, audience: String) -> EntraError {
        EntraError(
            70021, "invalid_request",
            "No matching federated identity record found for presented assertion. Assertion Issuer: '\(issuer)'. Assertion Subject: '\(subject)'. Assertion Audience: '\(audience)'. \(federationDocs)"
        )
    }

    /// 700211/700212/700213: the one claim that no federated credential matches.
    static func noMatchingFederatedIdentity(code: Int, claim: String, value: String) -> EntraError {
        EntraError(
            code, "invalid_request",
            "No matching federated identity record found for presented assertion \(claim) '\(value)'. Please note that the matching is done using a case-sensitive comparison. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. \(federationDocs)"
        )
    }

    static func oidcEndpointFailed(_ detail: String) -> EntraError {
        EntraError(90061, "invalid_request", "Request to External OIDC endpoint failed. \(detail)")
    }

    static func signatureValidationFailed(_ reason: String) -> EntraError {
        EntraError(
            700027, "invalid_client",
            "Client assertion failed signature validation. (Reason - \(reason))")
    }
}
