import Crypto
import FoundationEssentials
import Glibc
import NIOHTTP1
import TokenExchange

/// Entra's checks for client credentials with a federated assertion, in the order that keeps
/// the emulator safe: request shape first, then the assertion's own claims, then the federated
/// credentials, and only for an issuer a credential names the network fetch of its keys (an
/// arbitrary `iss` must never make the token service fetch a URL).
extension EntraEmulator {
    static let jwtBearerAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    /// Tolerance for clocks that disagree, applied to `nbf` and `exp`.
    static let clockSkew: TimeInterval = 300
    /// The longest assertion lifetime Entra accepts for a federated credential.
    static let maxAssertionLifetime: TimeInterval = 25 * 3600

    /// The success body of the token endpoint.
    struct TokenResponseBody: Codable, Sendable {
        var tokenType = "Bearer"
        var expiresIn: Int
        var extExpiresIn: Int
        var refreshIn: Int?
        var accessToken: String

        enum CodingKeys: String, CodingKey {
            case tokenType = "token_type"
            case expiresIn = "expires_in"
            case extExpiresIn = "ext_expires_in"
            case refreshIn = "refresh_in"
            case accessToken = "access_token"
        }
    }

    /// Validates the request and issues an access token, or throws the AADSTS error Entra would.
    func exchange(_ form: FormFields, tenant: String, record: inout RequestRecord) async throws(EntraError) -> TokenResponseBody {
        // GUIDs are case-insensitive in Entra: tenant and client ids match regardless of case.
        guard tenant.lowercased() == configuration.tenantId.lowercased() else { throw .tenantNotFound(tenant) }

        guard let grantType = form["grant_type"] else { throw .missingParameter("grant_type") }
        guard grantType == "client_credentials" else { throw .unsupportedGrantType(grantType) }
        guard let clientId = form["client_id"], !clientId.isEmpty else { throw .missingParameter("client_id") }
        let ownSubjects = configuration.appSubjects.first { $0.key.lowercased() == clientId.lowercased() }?.value
        guard
            ownSubjects != nil
                || ([configuration.clientId] + configuration.extraClientIds).contains(where: { $0.lowercased() == clientId.lowercased() })
        else {
            throw .applicationNotFound(clientId: clientId, tenant: tenant)
        }

        guard let scope = form["scope"], scope.contains(where: { !$0.isWhitespace }) else {
            throw .missingParameter("scope")
        }
        let scopes = scope.split(separator: " ")
        guard scopes.count == 1 else { throw .invalidScope(scope) }
        guard scope.hasSuffix("/.default") else { throw .scopeWithoutDefault(scope) }
        let resource = String(scope.dropLast("/.default".count))
        guard !resource.isEmpty else { throw .invalidScope(scope) }

        guard let assertion = form["client_assertion"], !assertion.isEmpty else {
            throw form["client_secret"] != nil ? .invalidSecret : .missingCredential
        }
        guard let assertionType = form["client_assertion_type"] else { throw .missingParameter("client_assertion_type") }
        guard assertionType == Self.jwtBearerAssertionType else { throw .unsupportedAssertionType(assertionType) }

        let parsed = try Self.parse(assertion)
        let claims = parsed.claims
        record.assertionSubject = claims.sub
        record.assertionIssuer = claims.iss
        record.assertionJti = claims.jti
        guard let issuer = claims.iss, let subject = claims.sub, let exp = claims.exp, !claims.aud.isEmpty else {
            throw .malformedJWT
        }

        let currentTime = now()
        let nowSeconds = currentTime.timeIntervalSince1970
        let validFrom = claims.nbf ?? claims.iat ?? 0
        if nowSeconds + Self.clockSkew < validFrom || nowSeconds - Self.clockSkew >= exp {
            throw .notWithinValidTimeRange(
                now: currentTime, validFrom: Date(timeIntervalSince1970: validFrom), expiry: Date(timeIntervalSince1970: exp))
        }
        if let start = claims.iat ?? claims.nbf, exp - start > Self.maxAssertionLifetime {
            // Clamped: an absurd exp (1e300) must be refused, not trap the conversion.
            throw .lifetimeTooLong(seconds: Int(min(exp - start, 1e15)))
        }

        // An app with credentials of its own trusts only its subjects.
        let trusted =
            ownSubjects.map { $0.map { FederatedCredential(issuer: issuerURL, subject: $0, audience: DevIssuer.federationAudience) } } ?? credentials
        try Self.matchFederatedCredential(trusted, issuer: issuer, subject: subject, audiences: claims.aud)
        try await keyCache.verify(assertion, kid: parsed.kid, issuer: issuer)

        return try await issueAccessToken(resource: resource, tenant: tenant, clientId: clientId)
    }

    /// Exact, case-sensitive matching against every credential. When the assertion fails to
    /// match only by one claim (700211 issuer, 700212 audience, 700213 subject) against the
    /// credentials closest to it, that claim is named; otherwise the general 70021.
    static func matchFederatedCredential(
        _ credentials: [FederatedCredential], issuer: String, subject: String, audiences: [String]
    ) throws(EntraError) {
        var closest: (count: Int, codes: Set<Int>) = (Int.max, [])
        for credential in credentials {
            var differs: [Int] = []
            if credential.issuer != issuer { differs.append(700211) }
            if !audiences.contains(credential.audience) { differs.append(700212) }
            if credential.subject != subject { differs.append(700213) }
            if differs.isEmpty { return }
            if differs.count < closest.count { closest = (differs.count, []) }
            if differs.count == closest.count { closest.codes.formUnion(differs) }
        }
        let audience = audiences.joined(separator: ",")
        switch closest.count == 1 && closest.codes.count == 1 ? closest.codes.first : 70021 {
        case 700211: throw .noMatchingFederatedIdentity(code: 700211, claim: "issuer", value: issuer)
        case 700212: throw .noMatchingFederatedIdentity(code: 700212, claim: "audience", value: audience)
        case 700213: throw .noMatchingFederatedIdentity(code: 700213, claim: "subject", value: subject)
        default: throw .noMatchingFederatedIdentity(issuer: issuer, subject: subject, audience: audience)
        }
    }

    /// Splits and decodes a compact JWS without trusting it (AADSTS50027 when it is not one).
    static func parse(_ token: String) throws(EntraError) -> (kid: String?, claims: AssertionClaims) {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[2].isEmpty,
            let headerBytes = Base64URL.decode(parts[0], padding: .forbidden), let payloadBytes = Base64URL.decode(parts[1], padding: .forbidden),
            Base64URL.decode(parts[2], padding: .forbidden) != nil,
            let header = try? JSONDecoder().decode(JWSHeader.self, from: Data(headerBytes)),
            let claims = try? JSONDecoder().decode(AssertionClaims.self, from: Data(payloadBytes))
        else { throw .malformedJWT }
        return (header.kid, claims)
    }

    /// The header fields read: `alg` must be a string; a `kid` of another type counts as absent.
    private struct JWSHeader: Decodable {
        var alg: String
        var kid: String?

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            alg = try container.decode(String.self, forKey: .alg)
            kid = try? container.decodeIfPresent(String.self, forKey: .kid)
        }

        private enum CodingKeys: String, CodingKey { case alg, kid }
    }

    /// Signs an app-only v2.0 access token for `resource`.
    private func issueAccessToken(resource: String, tenant: String, clientId: String) async throws(EntraError) -> TokenResponseBody {
        let lifetime = Int(configuration.accessTokenLifetime.components.seconds)
        let issuedAt = Int(now().timeIntervalSince1970)
        let uti = Base64URL.encode((0..<16).map { _ in UInt8.random(in: 0...255) })
        let claims = AccessTokenClaims(
            aud: resource, iss: "\(authorityHost)/\(configuration.tenantId)/v2.0",
            iat: issuedAt, nbf: issuedAt, exp: issuedAt + lifetime,
            appid: clientId, appidacr: "2", azp: clientId, azpacr: "2",
            idp: "\(authorityHost)/\(configuration.tenantId)/v2.0", idtyp: "app",
            oid: servicePrincipalId, sub: servicePrincipalId, tid: configuration.tenantId,
            uti: uti, jti: UUID().uuidString.lowercased(), ver: "2.0")
        let token: String
        do {
            token = try await key.sign(claims)
        } catch {
            var failure = EntraError(90033, "server_error", "A transient error has occurred. Please try again.")
            failure.status = .internalServerError
            throw failure
        }
        return TokenResponseBody(
            expiresIn: lifetime, extExpiresIn: lifetime,
            refreshIn: lifetime >= 7200 ? lifetime / 2 : nil,
            accessToken: token)
    }

    static func sha256Hex(_ text: String) -> String {
        SHA256.hash(data: Array(text.utf8)).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
