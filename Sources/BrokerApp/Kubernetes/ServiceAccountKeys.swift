import AssertionSources
import FoundationEssentials
import Logging
import PlainJSON
import Synchronization
import TokenExchange

/// The public keys the cluster signs service-account tokens with: a JWKS document, as the API
/// server serves it at `/openid/v1/jwks` (`kubernetes.serviceAccountKeys`). In node mode a
/// pod's file counts as its token only with a valid signature by one of them: a pod can put
/// any file into a projected volume of its own (a configMap, a secret, the downward API),
/// and the claims of an unsigned one would name whichever service account it liked.
///
/// RS256 only, what kube-apiserver signs with by default (and AKS, EKS and GKE do): a token
/// signed otherwise is not counted, and a log line says so.
struct ServiceAccountKeys: Sendable {
    /// The RSA keys by `kid`; a key without one is tried for tokens without one.
    private(set) var keys: [String: RSAPublicKey] = [:]

    /// The keys of a JWKS document; keys of other types are skipped, RSA keys that are not
    /// usable (shorter than 2048 bits, say) are errors.
    init(jwks bytes: [UInt8]) throws(KeySetError) {
        guard let document = try? UntypedJSON.parse(bytes) as? [String: Any], let entries = document["keys"] as? [Any] else {
            throw KeySetError("is not a JWKS document (a JSON object with a \"keys\" array)")
        }
        for (index, entry) in entries.enumerated() {
            guard let key = entry as? [String: Any], key["kty"] as? String == "RSA" else { continue }
            if let use = key["use"] as? String, use != "sig" { continue }
            let kid = key["kid"] as? String ?? ""
            guard let n = (key["n"] as? String).flatMap({ Base64URL.decode($0) }), let e = (key["e"] as? String).flatMap({ Base64URL.decode($0) }),
                let parsed = RSAPublicKey(modulus: Array(n), exponent: Array(e))
            else {
                throw KeySetError("key \(index) (kid \"\(kid)\") is not a usable RSA key: n and e must be base64url, n 2048 to 8192 bits")
            }
            keys[kid] = parsed
        }
        guard !keys.isEmpty else { throw KeySetError("holds no RSA signing key") }
    }

    /// What a token's signature says.
    enum Verdict: Equatable {
        case valid
        case invalid
        /// Signed with a key not in the set (`kid`): the set may be out of date.
        case unknownKey(String)
        /// An algorithm other than RS256.
        case unsupported(String)
    }

    /// Checks the signature of compact JWS `jwt`.
    func verdict(_ jwt: String) -> Verdict {
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = Base64URL.decode(parts[0]), let signature = Base64URL.decode(parts[2]),
            let header = try? UntypedJSON.parse(headerBytes) as? [String: Any]
        else { return .invalid }
        guard header["alg"] as? String == "RS256" else { return .unsupported(header["alg"] as? String ?? "none") }
        let kid = header["kid"] as? String ?? ""
        guard let key = keys[kid] else { return .unknownKey(kid) }
        let signed = parts[0].utf8.count + 1 + parts[1].utf8.count
        return key.verifiesRS256(signature: Array(signature), message: jwt.utf8.prefix(signed)) ? .valid : .invalid
    }

    /// No keys: no pod's token counts.
    static let none = NoKeys()

    struct NoKeys: ServiceAccountTokenVerifier {
        func isSignedByCluster(_ assertion: Assertion) -> Bool { false }
    }

    /// Why a key set cannot be used.
    struct KeySetError: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }
}

/// The cluster's keys as node mode holds them: loaded at start, and loaded again when a token
/// names a key they do not hold — the cluster rotated its keys, and the file (a mounted
/// ConfigMap) or the API server has followed — at most every `reloadInterval`. The first such
/// token after the start is not held back.
final class ClusterKeys: ServiceAccountTokenVerifier {
    /// Loads the keys again; called on the pod watcher's thread, so it may block.
    typealias Load = @Sendable () throws(ServiceAccountKeys.KeySetError) -> ServiceAccountKeys

    let source: ServiceAccountKeySource
    private let load: Load
    private let reloadInterval: Duration
    private let logger: Logger
    private let state: Mutex<(keys: ServiceAccountKeys, reloadedAt: ContinuousClock.Instant?)>

    /// Holds `keys`, loaded from `source`, and loads again with `load`.
    init(source: ServiceAccountKeySource, keys: ServiceAccountKeys, reloadInterval: Duration = .seconds(30), logger: Logger, load: @escaping Load) {
        self.source = source
        self.load = load
        self.reloadInterval = reloadInterval
        self.logger = logger
        state = Mutex((keys, nil))
    }

    /// The keys of JWKS file `path`, read now; throws (with the path and the reason) when it cannot be used.
    static func file(_ path: String, logger: Logger) throws(ServiceAccountKeys.KeySetError) -> ClusterKeys {
        ClusterKeys(source: .file(path), keys: try read(path), logger: logger) { () throws(ServiceAccountKeys.KeySetError) in try read(path) }
    }

    private static func read(_ path: String) throws(ServiceAccountKeys.KeySetError) -> ServiceAccountKeys {
        guard let bytes = FileManager.default.contents(atPath: path) else {
            throw ServiceAccountKeys.KeySetError("cannot read \(path)")
        }
        do {
            return try ServiceAccountKeys(jwks: Array(bytes))
        } catch {
            throw ServiceAccountKeys.KeySetError("\(path) \(error.message)")
        }
    }

    func isSignedByCluster(_ assertion: Assertion) -> Bool {
        var verdict = state.withLock { $0.keys.verdict(assertion.jwt) }
        if case .unknownKey = verdict, let keys = reloadIfDue() { verdict = keys.verdict(assertion.jwt) }
        switch verdict {
        case .valid:
            return true
        case .invalid:
            logger.warning(
                "a pod's file claims a service account but is not signed by the cluster: ignored",
                metadata: [
                    "assertion.origin": "\(assertion.origin)",
                    "assertion.sub": "\(JWTClaims.shown(assertion.claims.subject ?? ""))",
                ])
        case .unknownKey(let kid):
            let hint =
                switch source {
                case .file: "update the file if the cluster rotated its keys"
                case .apiServer: "the API server does not hold it either"
                }
            logger.warning(
                "a pod's token is signed with a key kubernetes.serviceAccountKeys does not hold: ignored (\(hint))",
                metadata: [
                    "assertion.origin": "\(assertion.origin)", "jwt.kid": "\(UntrustedText.sanitize(kid, limit: 128))",
                    "keys.origin": "\(source.origin)",
                ])
        case .unsupported(let algorithm):
            logger.warning(
                "a pod's token is signed with an algorithm node mode does not check (RS256 only): ignored",
                metadata: ["assertion.origin": "\(assertion.origin)", "jwt.alg": "\(UntrustedText.sanitize(algorithm, limit: 32))"])
        }
        return false
    }

    /// The keys loaded again, unless loaded within `reloadInterval`; nil when not due or
    /// unusable (the keys held stay).
    private func reloadIfDue() -> ServiceAccountKeys? {
        let due = state.withLock { state -> Bool in
            if let last = state.reloadedAt, last.duration(to: .now) < reloadInterval { return false }
            state.reloadedAt = .now
            return true
        }
        guard due else { return nil }
        do {
            let keys = try load()
            state.withLock { $0.keys = keys }
            logger.info("loaded kubernetes.serviceAccountKeys again", metadata: ["keys.origin": "\(source.origin)", "keys": "\(keys.keys.count)"])
            return keys
        } catch {
            logger.warning(
                "cannot load kubernetes.serviceAccountKeys again; the keys held stay", metadata: ["error.message": "\(error.message)"])
            return nil
        }
    }
}
