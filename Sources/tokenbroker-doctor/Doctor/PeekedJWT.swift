import Foundation
import TokenExchange

/// The header and claims of a compact JWT, decoded without checking the signature
/// (the doctor reports what the token says; the token service verifies it).
/// Holds no signature and no token text, so nothing secret can be printed from it.
struct PeekedJWT {
    var algorithm: String?
    var keyId: String?
    var issuer: String?
    var subject: String?
    var audiences: [String]
    var expiresAt: Int?
    var notBefore: Int?
    var issuedAt: Int?
    /// `kubernetes.io`: namespace, pod name, service account name, when present.
    var kubernetes: (namespace: String?, pod: String?, serviceAccount: String?)?

    /// Why some text is not a JWT, in words for the report.
    struct Malformed: Error {
        let reason: String
    }

    init(compact text: String) throws(Malformed) {
        let parts = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw Malformed(reason: "\(parts.count) dot-separated part\(parts.count == 1 ? "" : "s"), a JWT has 3 (header.payload.signature)")
        }
        guard let header = Self.object(parts[0]) else { throw Malformed(reason: "the header is not base64url-encoded JSON") }
        guard let claims = Self.object(parts[1]) else { throw Malformed(reason: "the payload is not base64url-encoded JSON") }
        guard !parts[2].isEmpty else { throw Malformed(reason: "the signature part is empty (an unsigned token)") }
        algorithm = header["alg"] as? String
        keyId = header["kid"] as? String
        issuer = claims["iss"] as? String
        subject = claims["sub"] as? String
        audiences = (claims["aud"] as? String).map { [$0] } ?? (claims["aud"] as? [Any])?.compactMap { $0 as? String } ?? []
        expiresAt = Self.seconds(claims["exp"])
        notBefore = Self.seconds(claims["nbf"])
        issuedAt = Self.seconds(claims["iat"])
        if let k8s = claims["kubernetes.io"] as? [String: Any] {
            kubernetes = (
                k8s["namespace"] as? String,
                (k8s["pod"] as? [String: Any])?["name"] as? String,
                (k8s["serviceaccount"] as? [String: Any])?["name"] as? String
            )
        }
    }

    private static func object(_ part: Substring) -> [String: Any]? {
        guard let data = Base64URL.decode(part) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    private static func seconds(_ value: Any?) -> Int? {
        guard let number = value as? NSNumber, number.doubleValue.isFinite, abs(number.doubleValue) < 1e15 else { return nil }
        return Int(number.doubleValue)
    }
}
