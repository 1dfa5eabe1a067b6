import FoundationEssentials
import Glibc
import Logging
import NIOHTTP1
import Synchronization

/// The Kubernetes-like OIDC issuer: discovery, JWKS, minted service-account tokens, and the
/// projected token file it keeps fresh.
final class DevIssuer: Sendable {
    /// The audience Entra's workload identity federation expects.
    static let federationAudience = "api://AzureADTokenExchange"
    static let tokenFileName = "azure-identity-token"
    /// The same workload's token with the RFC 8693 endpoint's audience, for dev-mode token exchange.
    static let stsTokenFileName = "sts-token"

    let issuerURL: String
    let tokenDirectory: String
    private let configuration: DevIdentityProviderConfiguration
    private let key: SigningKey
    private let identity: WorkloadIdentity
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let writes = Mutex(WriteState())
    private let foreignKey = Mutex<SigningKey?>(nil)

    /// The pod the minted tokens claim to be bound to; fixed for the provider's lifetime.
    private struct WorkloadIdentity {
        var serviceAccountUID = UUID().uuidString.lowercased()
        var podName = "workload-7d4b9c6f5-x2k8q"
        var podUID = UUID().uuidString.lowercased()
        var nodeName = "dev-node-0"
        var nodeUID = UUID().uuidString.lowercased()
    }

    /// Rotations may overlap (timer and `/_dev/rotate`); the newest signed token must win.
    private struct WriteState {
        var issued = 0
        var written = 0
    }

    init(
        issuerURL: String, tokenDirectory: String, configuration: DevIdentityProviderConfiguration,
        key: SigningKey, logger: Logger, now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.issuerURL = issuerURL
        self.tokenDirectory = tokenDirectory
        self.configuration = configuration
        self.key = key
        self.identity = WorkloadIdentity()
        self.logger = logger
        self.now = now
    }

    /// What a test may override when minting; every field defaults to the workload's token.
    ///
    /// Times are relative to now: `iat = now + issuedAtOffsetSeconds`,
    /// `nbf = now + notBeforeOffsetSeconds` (default: `iat`), `exp = iat + ttlSeconds`.
    struct MintRequest: Codable, Sendable {
        var sub: String?
        var aud: [String]?
        var iss: String?
        var ttlSeconds: Int?
        var notBeforeOffsetSeconds: Int?
        var issuedAtOffsetSeconds: Int?
        /// Sign with a key the JWKS does not publish (a different `kid`), to provoke AADSTS700027.
        var foreignKey: Bool?
        /// The service account and pod the token is bound to (node-mode tests: one issuer,
        /// many pods); `sub` follows the account unless given.
        var namespace: String?
        var serviceAccount: String?
        var podName: String?
        var podUID: String?
    }

    /// Signs a token shaped like kube-apiserver's TokenRequest answer.
    func mint(_ request: MintRequest = MintRequest()) async throws -> (token: String, claims: ServiceAccountClaims) {
        let nowSeconds = Int(now().timeIntervalSince1970)
        // Offsets are clamped to ±100 years so that no request can overflow the arithmetic.
        let bound = 100 * 365 * 86_400
        let iat = nowSeconds + min(max(request.issuedAtOffsetSeconds ?? 0, -bound), bound)
        let ttl = min(max(request.ttlSeconds ?? Int(configuration.assertionLifetime.components.seconds), -bound), bound)
        let namespace = request.namespace ?? configuration.serviceAccountNamespace
        let account = request.serviceAccount ?? configuration.serviceAccountName
        let claims = ServiceAccountClaims(
            aud: request.aud ?? [Self.federationAudience],
            exp: iat + ttl,
            iat: iat,
            iss: request.iss ?? issuerURL,
            jti: UUID().uuidString.lowercased(),
            kubernetes: .init(
                namespace: namespace,
                node: .init(name: identity.nodeName, uid: identity.nodeUID),
                pod: .init(name: request.podName ?? identity.podName, uid: request.podUID ?? identity.podUID),
                serviceaccount: .init(name: account, uid: identity.serviceAccountUID)),
            nbf: request.notBeforeOffsetSeconds.map { nowSeconds + min(max($0, -bound), bound) } ?? iat,
            sub: request.sub
                ?? (request.namespace == nil && request.serviceAccount == nil
                    ? configuration.serviceAccountSubject : "system:serviceaccount:\(namespace):\(account)"))
        let signer = request.foreignKey == true ? try await foreignSigningKey() : key
        return (try await signer.sign(claims), claims)
    }

    /// Mints a fresh workload token and swaps it into the token directory with the kubelet layout.
    @discardableResult
    func rotateTokenFile() async throws -> ServiceAccountClaims {
        let generation = writes.withLock { state -> Int in
            state.issued += 1
            return state.issued
        }
        let (token, claims) = try await mint()
        let (stsToken, _) = try await mint(MintRequest(aud: [configuration.stsAudience]))
        try writes.withLock { state in
            guard generation > state.written else { return }
            try AtomicWriter.write(
                files: [Self.tokenFileName: Array(token.utf8), Self.stsTokenFileName: Array(stsToken.utf8)], to: tokenDirectory)
            state.written = generation
        }
        logger.info(
            "rotated projected token",
            metadata: ["token.jti": "\(claims.jti)", "token.sub": "\(claims.sub)", "token.exp": "\(claims.exp)"])
        return claims
    }

    /// Routes the issuer's endpoints and its test controls.
    func handle(_ request: DevHTTPRequest) async -> DevHTTPResponse {
        switch (request.method, request.path) {
        case (.GET, "/.well-known/openid-configuration"):
            return .json(DiscoveryDocument(issuer: issuerURL, jwksURI: issuerURL + "/openid/v1/jwks"))
        case (.GET, "/openid/v1/jwks"):
            return .json(key.jwks)
        case (.POST, "/_dev/mint"):
            let mintRequest: MintRequest
            do {
                mintRequest =
                    request.body.isEmpty
                    ? MintRequest() : try JSONDecoder().decode(MintRequest.self, from: Data(request.body))
            } catch {
                return .badRequest("body must be a JSON mint request: \(error)")
            }
            do {
                let (token, claims) = try await mint(mintRequest)
                logger.debug("minted test token", metadata: ["token.jti": "\(claims.jti)", "token.sub": "\(claims.sub)"])
                return .json(["token": token])
            } catch {
                return .json(["error": "mint failed: \(error)"], status: .internalServerError)
            }
        case (.POST, "/_dev/rotate"):
            do {
                let claims = try await rotateTokenFile()
                return .json(["jti": claims.jti])
            } catch {
                return .json(["error": "rotation failed: \(error)"], status: .internalServerError)
            }
        default:
            return .notFound(request)
        }
    }

    private func foreignSigningKey() async throws -> SigningKey {
        if let existing = foreignKey.withLock({ $0 }) { return existing }
        let generated = try await SigningKey.generate()
        return foreignKey.withLock { stored in
            if let stored { return stored }
            stored = generated
            return generated
        }
    }

    /// The OIDC discovery fields Entra and Kubernetes clients read.
    struct DiscoveryDocument: Codable {
        var issuer: String
        var jwksURI: String
        var responseTypesSupported = ["id_token"]
        var subjectTypesSupported = ["public"]
        var idTokenSigningAlgValuesSupported = ["RS256"]

        enum CodingKeys: String, CodingKey {
            case issuer
            case jwksURI = "jwks_uri"
            case responseTypesSupported = "response_types_supported"
            case subjectTypesSupported = "subject_types_supported"
            case idTokenSigningAlgValuesSupported = "id_token_signing_alg_values_supported"
        }
    }
}
