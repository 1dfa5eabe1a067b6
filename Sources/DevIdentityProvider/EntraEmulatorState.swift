import FoundationEssentials
import Glibc
import NIOHTTP1

/// What `GET /_dev/stats` reports: every token request counted (Entra and RFC 8693 alike),
/// the last 100 described.
struct EntraStats: Codable, Sendable {
    var tokenRequests = 0
    /// Requests to the RFC 8693 endpoint (`/sts/token`), also counted in `tokenRequests`.
    var exchangeRequests = 0
    var byScope: [String: Int] = [:]
    var requests: [RequestRecord] = []

    static let keptRequests = 100

    mutating func record(_ record: RequestRecord) {
        tokenRequests += 1
        if record.endpoint == "sts" { exchangeRequests += 1 }
        if let scope = record.scope { byScope[scope, default: 0] += 1 }
        requests.append(record)
        if requests.count > Self.keptRequests { requests.removeFirst(requests.count - Self.keptRequests) }
    }
}

/// One token request as the stats describe it. The assertion itself is never kept: only its
/// SHA-256 and the claims a test needs to tell assertions apart.
struct RequestRecord: Codable, Sendable {
    /// `entra` (`/{tenant}/oauth2/v2.0/token`) or `sts` (`/sts/token`).
    var endpoint: String?
    var scope: String?
    var clientId: String?
    var fields: [String] = []
    var grantType: String?
    var clientAssertionType: String?
    var assertionSha256: String?
    var assertionSubject: String?
    var assertionIssuer: String?
    var assertionJti: String?
    var status: Int = 0
    /// The AADSTS number of an Entra rejection.
    var errorCode: Int?
    /// RFC 8693 requests: `subject_token_type`, `requested_token_type`, `audience`, `resource`.
    var subjectTokenType: String?
    var requestedTokenType: String?
    var audience: String?
    var resource: String?
    /// RFC 8693 requests: the client authenticated with HTTP Basic, if any.
    var authenticatedClientId: String?
    /// The OAuth `error` of an RFC 8693 rejection, e.g. `invalid_grant`.
    var error: String?
}

/// A planned failure for the next `count` token requests (`POST /_dev/faults`).
struct FaultPlan: Codable, Sendable {
    var status: Int
    var count: Int?
    var retryAfterSeconds: Int?
    /// Sent verbatim as `text/plain`; when absent an Entra-style JSON error is sent.
    var body: String?
}

/// `POST /_dev/latency` body.
struct LatencyRequest: Codable, Sendable {
    var milliseconds: Int
}

/// The emulator's mutable state, kept behind one lock.
struct EntraEmulatorState: Sendable {
    var latency: Duration
    var fault: FaultPlan?
    var faultRemaining = 0
    var stats = EntraStats()

    /// Consumes one planned failure, if any remain.
    mutating func takeFault() -> FaultPlan? {
        guard let fault, faultRemaining > 0 else { return nil }
        faultRemaining -= 1
        if faultRemaining == 0 { self.fault = nil }
        return fault
    }
}

extension FaultPlan {
    /// The response a planned failure produces; JSON bodies mimic Entra's throttling and outage errors.
    func response(traceId: String, correlationId: String, now: Date) -> DevHTTPResponse {
        let status = HTTPResponseStatus(statusCode: self.status)
        var response: DevHTTPResponse
        if let body {
            response = DevHTTPResponse.text(body, status: status)
        } else {
            let error: EntraError =
                switch self.status {
                case 429:
                    EntraError(90055, "temporarily_unavailable", "There are too many incoming requests. Please try again later.")
                case 503:
                    EntraError(90033, "temporarily_unavailable", "A transient error has occurred. Please try again.")
                default:
                    EntraError(90033, "server_error", "A transient error has occurred. Please try again.")
                }
            response = error.response(traceId: traceId, correlationId: correlationId, now: now)
            response.status = status
        }
        if let retryAfterSeconds {
            response.headers.replaceOrAdd(name: "Retry-After", value: String(retryAfterSeconds))
        }
        return response
    }
}
