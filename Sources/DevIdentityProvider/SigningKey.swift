import Crypto
import CryptoExtras
import DetachedThread
import FoundationEssentials
import Glibc
import JWTKit
import TokenExchange

/// An RS256 signing key with a Kubernetes-style `kid` and its public JWK.
///
/// The `kid` is base64url(SHA-256(DER public key)), what kube-apiserver publishes, so a
/// verifier that caches by `kid` behaves as it would against a real cluster.
struct SigningKey: Sendable {
    let kid: String
    /// The public half as a JWK (`kty`, `use`, `alg`, `kid`, `n`, `e`).
    let publicJWK: [String: String]
    /// The private key, PKCS#1 PEM: what `SigningKeyFile` saves.
    let privatePEM: String
    private let keys: JWTKeyCollection

    /// Generates a fresh 2048-bit key (~0.1–0.2 s).
    static func generate() async throws -> SigningKey {
        // Key generation is pure CPU for ~0.1–0.2 s: do it on its own thread, never on
        // the cooperative pool (two threads on a two-core machine) other work needs.
        let backing = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<_RSA.Signing.PrivateKey, any Error>) in
            DetachedThread.start { continuation.resume(with: Result { try _RSA.Signing.PrivateKey(keySize: .bits2048) }) }
        }
        return try await SigningKey(backing: backing)
    }

    /// The key saved as `pem` by an earlier start; throws unless it is a 2048-bit (or larger) RSA key.
    static func load(pem: String) async throws -> SigningKey {
        try await SigningKey(backing: _RSA.Signing.PrivateKey(pemRepresentation: pem))
    }

    private init(backing: _RSA.Signing.PrivateKey) async throws {
        let key = try Insecure.RSA.PrivateKey(backing: backing)
        kid = Base64URL.encode(SHA256.hash(data: backing.publicKey.derRepresentation))
        let primitives = try key.publicKey.getKeyPrimitives()
        publicJWK = [
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": Base64URL.encode(primitives.modulus), "e": Base64URL.encode(primitives.publicExponent),
        ]
        privatePEM = backing.pemRepresentation
        keys = JWTKeyCollection()
        // Go (kube-apiserver, Entra's clients) writes `/` unescaped; so do we, so tokens read alike.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        await keys.add(
            rsa: key, digestAlgorithm: .sha256, kid: JWKIdentifier(string: kid),
            serializer: DefaultJWTSerializer(jsonEncoder: encoder))
    }

    /// Signs `payload` with RS256, `typ: JWT` and this key's `kid`.
    func sign(_ payload: some JWTPayload) async throws -> String {
        try await keys.sign(payload, kid: JWKIdentifier(string: kid))
    }

    /// The JWKS document holding this key, `{"keys":[…]}`.
    var jwks: [String: [[String: String]]] { ["keys": [publicJWK]] }
}
