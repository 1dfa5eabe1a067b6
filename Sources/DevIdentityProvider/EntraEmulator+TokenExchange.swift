import FoundationEssentials
import Glibc
import JWTKit
import Logging
import NIOHTTP1
import Synchronization
import TokenExchange

/// An OAuth 2.0 Token Exchange (RFC 8693) endpoint, `POST {authorityHost}/sts/token`, as strict
/// as the Entra one: it trades a dev-issuer JWT with the configured audience and an allowed
/// subject for a signed access token, and refuses everything else with an RFC 6749 error body.
///
/// Checks run in an order that keeps it safe: client authentication and request shape first,
/// then the subject token's own claims, and only for the trusted issuer the fetch of its keys
/// (an arbitrary `iss` must never make the service fetch a URL). Like Google's and other
/// production STSs, a well-formed subject token that is not acceptable is `invalid_grant`;
/// a request that is not a valid token exchange is `invalid_request`.
extension EntraEmulator {
    static let tokenExchangeGrantType = "urn:ietf:params:oauth:grant-type:token-exchange"
    static let acceptedSubjectTokenTypes: Set<String> = [
        "urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token",
    ]
    static let issuedTokenType = "urn:ietf:params:oauth:token-type:access_token"
    static let acceptedRequestedTokenTypes: Set<String> = [issuedTokenType, "urn:ietf:params:oauth:token-type:jwt"]

    /// The success body (RFC 8693 §2.2.1).
    struct ExchangeResponseBody: Codable, Sendable {
        var accessToken: String
        var issuedTokenType: String
        var tokenType = "Bearer"
        var expiresIn: Int
        var scope: String?

        enum CodingKeys: String, CodingKey {
            case accessToken = "access_token"
            case issuedTokenType = "issued_token_type"
            case tokenType = "token_type"
            case expiresIn = "expires_in"
            case scope
        }
    }

    /// The issuer of the tokens `/sts/token` issues, `{authorityHost}/sts`.
    var stsIssuer: String { authorityHost + "/sts" }

    var stsDiscoveryDocument: [String: String] {
        ["issuer": stsIssuer, "token_endpoint": stsIssuer + "/token", "jwks_uri": stsIssuer + "/keys"]
    }

    /// `POST /sts/token`: latency, planned faults, then the checks; every request is recorded.
    func stsTokenEndpoint(_ request: DevHTTPRequest) async -> DevHTTPResponse {
        let form = FormFields(request.body)
        var record = RequestRecord(
            endpoint: "sts", scope: form["scope"], fields: form.names, grantType: form["grant_type"],
            subjectTokenType: form["subject_token_type"], requestedTokenType: form["requested_token_type"],
            audience: form["audience"], resource: form["resource"])
        if let subjectToken = form["subject_token"] {
            record.assertionSha256 = Self.sha256Hex(subjectToken)
        }
        let requestId = UUID().uuidString.lowercased()
        var metadata: Logger.Metadata = [
            "sts.request_id": "\(requestId)", "sts.audience": "\(record.audience ?? "-")",
            "assertion.sha256": "\(record.assertionSha256.map { String($0.prefix(12)) } ?? "-")",
        ]
        let authorization = request.headers.first(name: "Authorization")
        var response = await answer(
            record, traceId: requestId, correlationId: requestId, faultMessage: "token exchange failed by planned fault", metadata: metadata
        ) { record in
            do throws(STSError) {
                let issued = try await tokenExchange(form, authorization: authorization, record: &record)
                logger.info("token exchanged", metadata: metadata.merging(["token.expires_in": "\(issued.expiresIn)"]) { $1 })
                return .json(issued)
            } catch {
                record.error = error.error
                metadata["sts.error"] = "\(error.error)"
                metadata["assertion.sub"] = "\(record.assertionSubject ?? "-")"
                logger.info("token exchange rejected", metadata: metadata)
                return error.response()
            }
        }
        response.headers.replaceOrAdd(name: "X-Request-Id", value: requestId)
        return response
    }

    /// Validates a token exchange request and issues an access token, or throws the RFC 6749 error.
    func tokenExchange(_ form: FormFields, authorization: String?, record: inout RequestRecord) async throws(STSError) -> ExchangeResponseBody {
        try authenticateClient(authorization, record: &record)
        let subjectToken = try Self.validatedSubjectToken(form)
        let (issuer, subject, kid) = try validatedClaims(of: subjectToken, record: &record)
        do {
            try await keyCache.verify(subjectToken, kid: kid, issuer: issuer)
        } catch {
            if error.code == 90061 {
                throw STSError(
                    error: "temporarily_unavailable", description: "the keys of issuer '\(issuer)' could not be fetched", status: .serviceUnavailable)
            }
            throw .invalidGrant("subject_token signature validation failed for subject '\(subject)': \(error.message)")
        }
        return try await issueExchangedToken(subject: subject, form: form, clientId: record.authenticatedClientId)
    }

    /// HTTP Basic client authentication, when the service is configured with a client.
    private func authenticateClient(_ authorization: String?, record: inout RequestRecord) throws(STSError) {
        if let expectedId = configuration.stsClientId, let expectedSecret = configuration.stsClientSecret {
            guard let authorization else { throw .clientAuthenticationRequired }
            guard let (id, secret) = Self.basicCredentials(authorization) else {
                throw .invalidClient("the Authorization header is not valid HTTP Basic")
            }
            guard id == expectedId, secret == expectedSecret else { throw .invalidClient("client authentication failed for client '\(id)'") }
            record.authenticatedClientId = id
        }
    }

    /// The form's parameters checked as RFC 8693 §2.1 asks; the subject token.
    private static func validatedSubjectToken(_ form: FormFields) throws(STSError) -> String {
        guard let grantType = form["grant_type"] else { throw .invalidRequest("missing grant_type") }
        guard grantType == Self.tokenExchangeGrantType else {
            throw STSError(
                error: "unsupported_grant_type", description: "grant_type '\(grantType)' is not supported; use \(Self.tokenExchangeGrantType)")
        }
        guard let subjectToken = form["subject_token"], !subjectToken.isEmpty else { throw .invalidRequest("missing subject_token") }
        guard let subjectTokenType = form["subject_token_type"] else { throw .invalidRequest("missing subject_token_type") }
        guard Self.acceptedSubjectTokenTypes.contains(subjectTokenType) else {
            throw .invalidRequest(
                "subject_token_type '\(subjectTokenType)' is not supported; use \(Self.acceptedSubjectTokenTypes.sorted().joined(separator: " or "))")
        }
        guard form["actor_token"] == nil, form["actor_token_type"] == nil else {
            throw .invalidRequest("actor_token (delegation) is not supported")
        }
        if let requested = form["requested_token_type"], !Self.acceptedRequestedTokenTypes.contains(requested) {
            throw .invalidRequest("requested_token_type '\(requested)' cannot be issued; this service issues \(Self.issuedTokenType)")
        }
        for name in ["grant_type", "subject_token", "subject_token_type", "audience", "resource", "scope", "requested_token_type"] {
            guard form.pairs.filter({ $0.name == name }).count <= 1 else { throw .invalidRequest("parameter '\(name)' was sent more than once") }
        }
        if let resource = form["resource"] {
            guard let url = URLComponents(string: resource), url.scheme != nil, url.fragment == nil else {
                throw STSError(error: "invalid_target", description: "resource '\(resource)' is not an absolute URI without a fragment")
            }
        }
        if let audience = form["audience"], audience.isEmpty {
            throw STSError(error: "invalid_target", description: "audience must not be empty")
        }
        return subjectToken
    }

    /// The subject token's claims checked against the trusted issuer, audience, times and
    /// subjects: its issuer, subject and key id.
    private func validatedClaims(
        of subjectToken: String, record: inout RequestRecord
    ) throws(STSError) -> (issuer: String, subject: String, kid: String?) {
        let parsed: (kid: String?, claims: AssertionClaims)
        do {
            parsed = try Self.parse(subjectToken)
        } catch {
            throw .invalidRequest("subject_token is not a JWT")
        }
        let claims = parsed.claims
        record.assertionSubject = claims.sub
        record.assertionIssuer = claims.iss
        record.assertionJti = claims.jti
        guard let issuer = claims.iss, let subject = claims.sub, let exp = claims.exp else {
            let missing = [claims.iss == nil ? "iss" : nil, claims.sub == nil ? "sub" : nil, claims.exp == nil ? "exp" : nil].compactMap { $0 }
            throw .invalidGrant("subject_token lacks the claim(s) \(missing.joined(separator: ", "))")
        }
        guard issuer == issuerURL else {
            throw .invalidGrant("subject_token issuer '\(issuer)' is not trusted; this service trusts only '\(issuerURL)'")
        }
        guard claims.aud.contains(configuration.stsAudience) else {
            throw .invalidGrant("subject_token audience '\(claims.aud.joined(separator: ","))' does not include '\(configuration.stsAudience)'")
        }
        let currentTime = now()
        let nowSeconds = currentTime.timeIntervalSince1970
        if nowSeconds - Self.clockSkew >= exp {
            throw .invalidGrant("subject_token for subject '\(subject)' expired at \(EntraTime.precise(Date(timeIntervalSince1970: exp)))")
        }
        if let nbf = claims.nbf ?? claims.iat, nowSeconds + Self.clockSkew < nbf {
            throw .invalidGrant("subject_token for subject '\(subject)' is not valid before \(EntraTime.precise(Date(timeIntervalSince1970: nbf)))")
        }
        if let start = claims.iat ?? claims.nbf, exp - start > Self.maxAssertionLifetime {
            throw .invalidGrant("subject_token lifetime \(Int(min(exp - start, 1e15))) s exceeds the maximum of \(Int(Self.maxAssertionLifetime)) s")
        }
        let allowed = [configuration.serviceAccountSubject] + configuration.extraSubjects
        guard allowed.contains(subject) else {
            throw .invalidGrant("subject '\(subject)' is not allowed to exchange tokens at this service (the match is exact and case-sensitive)")
        }
        return (issuer, subject, parsed.kid)
    }

    /// Signs the issued access token: `aud` is the requested audience, else the resource, else
    /// this service.
    private func issueExchangedToken(subject: String, form: FormFields, clientId: String?) async throws(STSError) -> ExchangeResponseBody {
        let lifetime = Int(configuration.accessTokenLifetime.components.seconds)
        let issuedAt = Int(now().timeIntervalSince1970)
        let scope = form["scope"].flatMap { $0.isEmpty ? nil : $0 }
        let claims = ExchangedTokenClaims(
            iss: stsIssuer, sub: subject, aud: form["audience"] ?? form["resource"] ?? stsIssuer,
            iat: issuedAt, nbf: issuedAt, exp: issuedAt + lifetime, jti: UUID().uuidString.lowercased(),
            scope: scope, clientId: clientId)
        do {
            let token = try await key.sign(claims)
            return ExchangeResponseBody(accessToken: token, issuedTokenType: Self.issuedTokenType, expiresIn: lifetime, scope: scope)
        } catch {
            throw STSError(error: "server_error", description: "signing failed", status: .internalServerError)
        }
    }

    /// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
    static func basicCredentials(_ header: String) -> (String, String)? {
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic", let data = Data(base64Encoded: String(parts[1])) else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        guard let colon = text.firstIndex(of: ":") else { return nil }
        return (FormEncoding.unescape(text[..<colon]), FormEncoding.unescape(text[text.index(after: colon)...]))
    }
}

/// The claims of a token issued by the RFC 8693 endpoint.
struct ExchangedTokenClaims: JWTPayload {
    var iss: String
    var sub: String
    var aud: String
    var iat: Int
    var nbf: Int
    var exp: Int
    var jti: String
    var scope: String?
    var clientId: String?

    enum CodingKeys: String, CodingKey {
        case iss, sub, aud, iat, nbf, exp, jti, scope
        case clientId = "client_id"
    }

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// An RFC 6749 §5.2 error from the RFC 8693 endpoint.
struct STSError: Error, Sendable {
    /// `invalid_request`, `invalid_grant`, `invalid_client`, `invalid_target`, …
    var error: String
    /// A sentence for the developer; names the subject when one was refused.
    var description: String
    /// 400, 401 for `invalid_client`, 5xx for the service's own failures.
    var status: HTTPResponseStatus

    init(error: String, description: String, status: HTTPResponseStatus? = nil) {
        self.error = error
        self.description = description
        self.status = status ?? (error == "invalid_client" ? .unauthorized : .badRequest)
    }

    static func invalidRequest(_ description: String) -> STSError { STSError(error: "invalid_request", description: description) }
    static func invalidGrant(_ description: String) -> STSError { STSError(error: "invalid_grant", description: description) }
    static func invalidClient(_ description: String) -> STSError { STSError(error: "invalid_client", description: description) }
    static let clientAuthenticationRequired = STSError.invalidClient("client authentication is required (HTTP Basic)")

    struct Body: Codable, Sendable {
        var error: String
        var errorDescription: String

        enum CodingKeys: String, CodingKey {
            case error
            case errorDescription = "error_description"
        }
    }

    func response() -> DevHTTPResponse {
        var response = DevHTTPResponse.json(Body(error: error, errorDescription: description), status: status)
        if status == .unauthorized {
            response.headers.add(name: "WWW-Authenticate", value: "Basic realm=\"tokenbroker-dev-sts\", error=\"\(error)\"")
        }
        return response
    }
}
