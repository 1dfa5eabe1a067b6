import JWTKit

/// The claims of a projected Kubernetes service-account token.
///
/// `verify(using:)` is empty on purpose: validity is judged by the Entra emulator, which must
/// report Entra's own error codes rather than jwt-kit's.
struct ServiceAccountClaims: JWTPayload, Equatable {
    var aud: [String]
    var exp: Int
    var iat: Int
    var iss: String
    var jti: String
    var kubernetes: KubernetesClaim?
    var nbf: Int
    var sub: String

    enum CodingKeys: String, CodingKey {
        case aud, exp, iat, iss, jti, nbf, sub
        case kubernetes = "kubernetes.io"
    }

    /// The `kubernetes.io` claim: where the token was bound.
    struct KubernetesClaim: Codable, Equatable, Sendable {
        var namespace: String
        var node: Reference?
        var pod: Reference?
        var serviceaccount: Reference
    }

    /// A `{name, uid}` reference to a Kubernetes object.
    struct Reference: Codable, Equatable, Sendable {
        var name: String
        var uid: String
    }

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// The claims of an access token the Entra emulator issues (an app-only v2.0 token).
struct AccessTokenClaims: JWTPayload {
    var aud: String
    var iss: String
    var iat: Int
    var nbf: Int
    var exp: Int
    var appid: String
    var appidacr: String
    var azp: String
    var azpacr: String
    var idp: String
    var idtyp: String
    var oid: String
    var sub: String
    var tid: String
    var uti: String
    var jti: String
    var ver: String

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// The claims the emulator reads from a client assertion, tolerant of the shapes JWTs take
/// (`aud` as a string or an array, times as integers or fractions); presence is checked by the caller.
struct AssertionClaims: JWTPayload {
    var iss: String?
    var sub: String?
    var aud: [String]
    var exp: Double?
    var nbf: Double?
    var iat: Double?
    var jti: String?

    enum CodingKeys: String, CodingKey { case iss, sub, aud, exp, nbf, iat, jti }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        iss = try container.decodeIfPresent(String.self, forKey: .iss)
        sub = try container.decodeIfPresent(String.self, forKey: .sub)
        if let many = try? container.decodeIfPresent([String].self, forKey: .aud) {
            aud = many
        } else {
            aud = (try container.decodeIfPresent(String.self, forKey: .aud)).map { [$0] } ?? []
        }
        exp = try container.decodeIfPresent(Double.self, forKey: .exp)
        nbf = try container.decodeIfPresent(Double.self, forKey: .nbf)
        iat = try container.decodeIfPresent(Double.self, forKey: .iat)
        jti = try container.decodeIfPresent(String.self, forKey: .jti)
    }

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}
