import FoundationEssentials

/// The Entra error codes (`AADSTSnnnn`) a workload-identity exchange meets, in one table:
/// the broker's message for each (`EntraTokenResponse`, with the request's particulars), and
/// what each means and what fixes it (`tokenbroker doctor`, and docs/exchanges.md).
public enum AADSTS {
    /// One code's explanation.
    public struct Explanation: Sendable {
        /// A few words: what went wrong.
        public var meaning: String
        /// One line: what to change.
        public var fix: String
        /// Whether the same request may succeed later (a stale file gets rotated, a JWKS fetch recovers).
        var isRetryable = false
        /// The broker's explanation of the refusal, in terms of this request.
        var hint: @Sendable (Request) -> String
    }

    /// What the broker's explanations name: the configuration and the assertion sent.
    struct Request {
        /// The code being explained (set by `hint`).
        var code = 0
        var configuration: EntraConfiguration
        var scope: Scope
        var assertion: Assertion
        var now: Date
    }

    /// The explanation of `code`, nil for a code outside the table.
    public static func explanation(_ code: Int) -> Explanation? { table[code] }

    /// The broker's hint for a refusal whose first code is `code` (nil: Entra sent none).
    static func hint(_ code: Int?, for request: Request) -> UpstreamFailure.Hint {
        guard let code, let entry = table[code] else { return UpstreamFailure.Hint(text: "the token service rejected the exchange") }
        var request = request
        request.code = code
        return UpstreamFailure.Hint(text: entry.hint(request), isRetryable: entry.isRetryable)
    }

    private static let federatedCredential = "az identity federated-credential create (or the app's Certificates & secrets → Federated credentials)"
    private static let useDefaultScope = "ask for <resource>/.default, e.g. https://storage.azure.com/.default"

    private static let table: [Int: Explanation] = [
        70021: Explanation(
            meaning: "no federated identity credential matches the assertion's issuer, subject and audience",
            fix:
                "add a federated credential with exactly the token's iss, sub and aud (see token.*; case-sensitive) with \(federatedCredential); a new one takes a few minutes to propagate",
            hint: noMatchingCredential),
        700211: Explanation(
            meaning: "issuer mismatch: no federated credential has the assertion's issuer",
            fix:
                "set the credential's issuer to the token's iss exactly, trailing slash included (AKS: az aks show --query oidcIssuerProfile.issuerUrl)",
            hint: noMatchingCredential),
        700212: Explanation(
            meaning: "audience mismatch: no federated credential has the assertion's audience",
            fix: "project the token with audience api://AzureADTokenExchange, or give the credential the token's aud",
            hint: noMatchingCredential),
        700213: Explanation(
            meaning: "subject mismatch: no federated credential has the assertion's subject",
            fix: "set the credential's subject to system:serviceaccount:<namespace>:<service account> of this pod (case-sensitive)",
            hint: noMatchingCredential),
        700024: Explanation(
            meaning: "expired assertion: the client assertion is not within its valid time range",
            fix:
                "the token file is stale or a clock is off: see token.lifetime, token.rotation and clock.skew; read the file again before each exchange",
            isRetryable: true,
            hint: { request in
                let claims = request.assertion.claims
                let age = claims.issuedAt.map { "issued \(Int(request.now.timeIntervalSince($0))) s ago" } ?? "no iat"
                return "the assertion from \(request.assertion.origin) is outside its valid time range: \(claims.expiryForMessages), \(age). "
                    + "The file is stale: is the projected token still being rotated?"
            }),
        70023: Explanation(
            meaning: "the assertion's lifetime is longer than 25 hours",
            fix: "set serviceAccountToken.expirationSeconds to 86400 or less",
            hint: { "the assertion from \($0.assertion.origin) has a lifetime longer than Entra accepts; issue it with a shorter expirationSeconds" }),
        700016: Explanation(
            meaning: "application not found in the tenant (wrong client id, or the app is in another tenant)",
            fix: "check AZURE_CLIENT_ID (clientId) and AZURE_TENANT_ID (tenantId): the app or managed identity must exist in that tenant",
            hint: {
                "application \($0.configuration.clientId) was not found in tenant \($0.configuration.tenantId); "
                    + "check clientId/AZURE_CLIENT_ID and tenantId/AZURE_TENANT_ID"
            }),
        90002: Explanation(
            meaning: "wrong tenant: the tenant was not found",
            fix: "check AZURE_TENANT_ID (tenantId) and AZURE_AUTHORITY_HOST: sovereign clouds have their own authority host",
            hint: { "tenant \($0.configuration.tenantId) was not found; check tenantId/AZURE_TENANT_ID and the authority host" }),
        700027: Explanation(
            meaning: "the assertion's signature did not verify against the issuer's published keys",
            fix: "the issuer's JWKS must publish the token's kid: see issuer.keys",
            hint: {
                "the assertion's signature did not verify against the keys published by its issuer (\($0.assertion.claims.federationFields)); "
                    + "is the issuer's JWKS current and publicly reachable?"
            }),
        90061: Explanation(
            meaning: "Entra could not fetch the issuer's OIDC discovery document or JWKS",
            fix: "the issuer's discovery document and JWKS must be publicly reachable over https: see issuer.discovery",
            isRetryable: true,
            hint: {
                let issuer = JWTClaims.shown($0.assertion.claims.issuer ?? "-")
                return "the token service could not fetch the issuer's OIDC discovery document or JWKS for iss='\(issuer)'"
            }),
        50027: Explanation(
            meaning: "the assertion is not a valid JWT",
            fix: "point the identity's source at the projected service-account token (see token.jwt)",
            hint: { "the token service could not parse the assertion from \($0.assertion.origin) as a JWT" }),
        1002012: Explanation(
            meaning: "a scope without /.default in the client-credentials flow", fix: useDefaultScope, hint: invalidScope),
        70011: Explanation(meaning: "an invalid scope", fix: useDefaultScope, hint: invalidScope),
        50196: Explanation(
            meaning: "Entra detected a request loop",
            fix: "a client repeats requests too fast: get tokens through the broker, which caches them",
            isRetryable: true,
            hint: { _ in "the token service detected a request loop; requests are being repeated too fast" }),
    ]

    /// 70021 and its narrower forms 700211–700213 (which say which field differs).
    private static func noMatchingCredential(_ request: Request) -> String {
        let part = [700211: "issuer", 700212: "audience", 700213: "subject"][request.code]
        return "no federated identity credential of app \(request.configuration.clientId) matches the assertion"
            + (part.map { " (\($0) differs)" } ?? "")
            + "; the assertion has \(request.assertion.claims.federationFields). Add a federated credential with exactly these values "
            + "(they are case-sensitive); a new one can take a few minutes to propagate."
    }

    private static func invalidScope(_ request: Request) -> String {
        "scope '\(request.scope.value)' is not valid for this flow; use '<resource>/.default'"
    }
}
