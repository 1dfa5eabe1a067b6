public import FoundationEssentials
import Glibc
import PlainJSON

/// The claims of a JWT that the broker reasons about. Decoded without checking the
/// signature: the token service checks it; we only look at times and names so that
/// errors can be explained and expired assertions are never sent.
public struct JWTClaims: Sendable, Equatable {
    /// `iss`: who issued the token.
    public var issuer: String?
    /// `sub`: whom the token is about.
    public var subject: String?
    /// `aud`: a string or an array of strings in the token; always a list here.
    public var audiences: [String]
    /// `exp`: when the token stops being valid.
    public var expiresAt: Date?
    /// `nbf`: when the token starts being valid.
    public var notBefore: Date?
    /// `iat`: when the token was issued.
    public var issuedAt: Date?
    /// `kubernetes.io`: what a projected service-account token says about its pod.
    public var kubernetes: KubernetesClaims?

    /// Creates claims from their parts.
    public init(
        issuer: String? = nil,
        subject: String? = nil,
        audiences: [String] = [],
        expiresAt: Date? = nil,
        notBefore: Date? = nil,
        issuedAt: Date? = nil,
        kubernetes: KubernetesClaims? = nil
    ) {
        self.issuer = issuer
        self.subject = subject
        self.audiences = audiences
        self.expiresAt = expiresAt
        self.notBefore = notBefore
        self.issuedAt = issuedAt
        self.kubernetes = kubernetes
    }

    /// Decodes the payload of a compact JWS (`header.payload.signature`).
    ///
    /// Throws `JWTDecodingError` naming what is wrong; never includes the token text.
    public init(jwt: String) throws(JWTDecodingError) {
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw JWTDecodingError("expected 3 dot-separated parts, found \(parts.count)")
        }
        guard !parts[0].isEmpty, !parts[1].isEmpty else {
            throw JWTDecodingError("the header or payload part is empty")
        }
        guard let payload = Base64URL.decode(parts[1]) else {
            throw JWTDecodingError("the payload is not base64url")
        }
        let object: Any
        do {
            object = try UntypedJSON.parse(payload)
        } catch {
            throw JWTDecodingError("the payload is not JSON")
        }
        guard let claims = object as? [String: Any] else {
            throw JWTDecodingError("the payload is not a JSON object")
        }
        self.issuer = claims["iss"] as? String
        self.subject = claims["sub"] as? String
        switch claims["aud"] {
        case let single as String: self.audiences = [single]
        case let many as [Any]: self.audiences = many.compactMap { $0 as? String }
        default: self.audiences = []
        }
        self.expiresAt = try Self.date(claims["exp"], name: "exp")
        self.notBefore = try Self.date(claims["nbf"], name: "nbf")
        self.issuedAt = try Self.date(claims["iat"], name: "iat")
        self.kubernetes = KubernetesClaims(claims["kubernetes.io"])
    }

    private static func date(_ value: Any?, name: String) throws(JWTDecodingError) -> Date? {
        guard let value else { return nil }
        guard let seconds = JSONNumber.double(value) else {
            throw JWTDecodingError("claim '\(name)' is not a number")
        }
        guard seconds >= 0, seconds < 253_402_300_800 else {
            throw JWTDecodingError("claim '\(name)' is out of range")
        }
        return Date(timeIntervalSince1970: seconds)
    }
}

/// The `kubernetes.io` claim the API server puts in a service-account token:
/// `{ namespace, pod: { name, uid }, serviceaccount: { name, uid }, node: { … } }`.
public struct KubernetesClaims: Sendable, Equatable {
    /// The namespace of the service account (and pod).
    public var namespace: String
    /// The service account's name.
    public var serviceAccountName: String
    /// The pod the token was issued for (absent in tokens not bound to a pod).
    public var podName: String?
    /// The pod's UID, as the API server writes it (lowercase, dashes).
    public var podUID: String?

    /// Claims from their parts.
    public init(namespace: String, serviceAccountName: String, podName: String? = nil, podUID: String? = nil) {
        self.namespace = namespace
        self.serviceAccountName = serviceAccountName
        self.podName = podName
        self.podUID = podUID
    }

    /// Reads the claim's JSON object; nil unless it names a namespace and a service account.
    init?(_ value: Any?) {
        guard let object = value as? [String: Any], let namespace = object["namespace"] as? String,
            let account = (object["serviceaccount"] as? [String: Any])?["name"] as? String
        else { return nil }
        let pod = object["pod"] as? [String: Any]
        self.init(namespace: namespace, serviceAccountName: account, podName: pod?["name"] as? String, podUID: pod?["uid"] as? String)
    }
}

/// Why a string is not a decodable JWT.
public struct JWTDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong, without any token text.
    public let reason: String

    /// Creates an error with a reason.
    public init(_ reason: String) { self.reason = reason }

    public var description: String { "not a JWT: \(reason)" }
}
