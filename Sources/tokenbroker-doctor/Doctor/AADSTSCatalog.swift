/// What the Entra error codes a workload-identity exchange meets mean, and what fixes
/// each (the same codes TokenExchange's `EntraTokenResponse` explains in the broker's
/// messages; docs/exchanges.md says what each means).
enum AADSTSCatalog {
    struct Entry {
        /// A few words: what went wrong.
        var meaning: String
        /// One line: what to change.
        var fix: String
    }

    static func entry(_ code: Int) -> Entry? { entries[code] }

    private static let federatedCredential = "az identity federated-credential create (or the app's Certificates & secrets → Federated credentials)"

    private static let entries: [Int: Entry] = [
        70021: Entry(
            meaning: "no federated identity credential matches the assertion's issuer, subject and audience",
            fix: "add a federated credential with exactly the token's iss, sub and aud (see token.*; case-sensitive) with \(federatedCredential); a new one takes a few minutes to propagate"),
        700211: Entry(
            meaning: "issuer mismatch: no federated credential has the assertion's issuer",
            fix: "set the credential's issuer to the token's iss exactly, trailing slash included (AKS: az aks show --query oidcIssuerProfile.issuerUrl)"),
        700212: Entry(
            meaning: "audience mismatch: no federated credential has the assertion's audience",
            fix: "project the token with audience api://AzureADTokenExchange, or give the credential the token's aud"),
        700213: Entry(
            meaning: "subject mismatch: no federated credential has the assertion's subject",
            fix: "set the credential's subject to system:serviceaccount:<namespace>:<service account> of this pod (case-sensitive)"),
        700024: Entry(
            meaning: "expired assertion: the client assertion is not within its valid time range",
            fix: "the token file is stale or a clock is off: see token.lifetime, token.rotation and clock.skew; read the file again before each exchange"),
        70023: Entry(
            meaning: "the assertion's lifetime is longer than 25 hours",
            fix: "set serviceAccountToken.expirationSeconds to 86400 or less"),
        700016: Entry(
            meaning: "application not found in the tenant (wrong client id, or the app is in another tenant)",
            fix: "check AZURE_CLIENT_ID (clientId) and AZURE_TENANT_ID (tenantId): the app or managed identity must exist in that tenant"),
        90002: Entry(
            meaning: "wrong tenant: the tenant was not found",
            fix: "check AZURE_TENANT_ID (tenantId) and AZURE_AUTHORITY_HOST: sovereign clouds have their own authority host"),
        700027: Entry(
            meaning: "the assertion's signature did not verify against the issuer's published keys",
            fix: "the issuer's JWKS must publish the token's kid: see issuer.keys"),
        90061: Entry(
            meaning: "Entra could not fetch the issuer's OIDC discovery document or JWKS",
            fix: "the issuer's discovery document and JWKS must be publicly reachable over https: see issuer.discovery"),
        50027: Entry(
            meaning: "the assertion is not a valid JWT",
            fix: "point the identity's source at the projected service-account token (see token.jwt)"),
        1002012: Entry(
            meaning: "a scope without /.default in the client-credentials flow",
            fix: "ask for <resource>/.default, e.g. https://storage.azure.com/.default"),
        70011: Entry(
            meaning: "an invalid scope",
            fix: "ask for <resource>/.default, e.g. https://storage.azure.com/.default"),
        50196: Entry(
            meaning: "Entra detected a request loop",
            fix: "a client repeats requests too fast: get tokens through the broker, which caches them"),
    ]
}
