import Foundation

/// The token's issuer as Entra sees it: `<iss>/.well-known/openid-configuration` names
/// the same issuer and a JWKS, and that JWKS publishes the token's `kid`. Unreachable
/// from here is a warning (Entra fetches from the internet, this pod may not);
/// reachable but wrong is a failure.
struct IssuerKeysCheck: DoctorCheck {
    func run(_ context: DoctorContext) -> [DoctorFinding] {
        guard let token = context.tokenFile?.token, let issuer = token.issuer, HTTPSURL(issuer) != nil else {
            return [.skip("issuer.discovery", "no token with an https issuer to check (see token.*)")]
        }
        guard let http = context.http else { return [.skip("issuer.discovery", "--offline")] }
        let discoveryURL = (issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer) + "/.well-known/openid-configuration"
        let discovery: [String: Any]
        switch Self.fetchJSON(http, discoveryURL, id: "issuer.discovery") {
        case .failure(let failure): return [failure.finding, .skip("issuer.keys", "no discovery document")]
        case .success(let object): discovery = object
        }
        let (finding, jwksURI) = Self.evaluate(discovery: discovery, issuer: issuer, url: discoveryURL)
        guard let jwksURI else { return [finding, .skip("issuer.keys", "no usable jwks_uri")] }
        guard let keyId = token.keyId else {
            return [finding, .warn("issuer.keys", "the token has no kid header", fix: "nothing to check: Entra tries each published key")]
        }
        switch Self.fetchJSON(http, jwksURI, id: "issuer.keys") {
        case .failure(let failure): return [finding, failure.finding]
        case .success(let jwks): return [finding, Self.evaluate(jwks: jwks, keyId: keyId, url: jwksURI)]
        }
    }

    /// The verdict on a discovery document, and its JWKS URL when usable (pure).
    static func evaluate(discovery: [String: Any], issuer: String, url: String) -> (DoctorFinding, String?) {
        let published = discovery["issuer"] as? String
        guard published == issuer else {
            return (
                .fail(
                    "issuer.discovery", "\(url) names issuer \(published ?? "none"), the token has iss=\(issuer); they must be equal",
                    fix:
                        "use the cluster's configured service-account issuer (--service-account-issuer) as the token's iss and the credential's issuer"
                ), nil
            )
        }
        guard let jwksURI = discovery["jwks_uri"] as? String, HTTPSURL(jwksURI) != nil else {
            return (
                .fail("issuer.discovery", "\(url) has no https jwks_uri", fix: "publish a discovery document whose jwks_uri is an https URL"), nil
            )
        }
        return (.pass("issuer.discovery", "\(url): issuer matches, jwks_uri=\(jwksURI)"), jwksURI)
    }

    /// The verdict on a JWKS for the token's `kid` (pure).
    static func evaluate(jwks: [String: Any], keyId: String, url: String) -> DoctorFinding {
        let kids = (jwks["keys"] as? [[String: Any]] ?? []).compactMap { $0["kid"] as? String }
        guard kids.contains(keyId) else {
            return .fail(
                "issuer.keys",
                "the token's kid \(keyId) is not among the \(kids.count) key(s) at \(url)\(kids.isEmpty ? "" : ": \(kids.prefix(5).joined(separator: ", "))")",
                fix:
                    "the token was signed by a key the issuer does not publish (rotated signing key, or another cluster's token): publish the new key's JWKS; Entra answers AADSTS700027"
            )
        }
        return .pass("issuer.keys", "kid \(keyId) is among the \(kids.count) key(s) at \(url)")
    }

    private static func fetchJSON(_ http: any DoctorHTTP, _ url: String, id: String) -> Result<[String: Any], FindingError> {
        switch http.get(url) {
        case .unreachable(let reason):
            return .failure(
                FindingError(
                    .warn(
                        id, "\(url) unreachable from here: \(DoctorText.oneLine(reason))",
                        fix: "Entra must reach it from the internet; check from outside the cluster (curl \(url))")))
        case .answered(let status, _, let body, _, _):
            guard status == 200 else {
                return .failure(
                    FindingError(
                        .fail(
                            id, "\(url) answered HTTP \(status)",
                            fix: "publish the issuer's OIDC documents at this URL (AKS: --enable-oidc-issuer); Entra answers AADSTS90061 otherwise")))
            }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
                return .failure(FindingError(.fail(id, "\(url) did not answer a JSON object", fix: "serve the OIDC document as JSON at this URL")))
            }
            return .success(object)
        }
    }

    private struct FindingError: Error {
        let finding: DoctorFinding
        init(_ finding: DoctorFinding) { self.finding = finding }
    }
}
