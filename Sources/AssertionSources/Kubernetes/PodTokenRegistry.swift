public import FoundationEssentials
import Glibc
import PlainJSON
import Synchronization
public import TokenExchange

/// A Kubernetes service account, `namespace/name`.
public struct ServiceAccount: Hashable, Sendable, CustomStringConvertible {
    /// The namespace.
    public var namespace: String
    /// The account's name.
    public var name: String

    /// An account from its two names.
    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }

    public var description: String { "\(namespace)/\(name)" }
}

/// What a token service sees of an assertion, and so what decides the tokens it gives:
/// pods whose assertions agree on these share one cached token per scope.
public struct AssertionSubject: Hashable, Sendable {
    /// `iss`.
    public var issuer: String
    /// `sub`, `system:serviceaccount:NS:NAME`.
    public var subject: String
    /// The audience the broker requires (`kubernetes.audience`).
    public var audience: String
}

/// Decides whether a token was signed by the cluster's service-account issuer. A pod can put
/// any file into a projected volume of its own (a configMap, a secret, the downward API), so
/// a file's claims count only once its signature is the cluster's.
public protocol ServiceAccountTokenVerifier: Sendable {
    /// Whether `assertion` carries a valid signature by one of the cluster's keys.
    func isSignedByCluster(_ assertion: Assertion) -> Bool
}

/// A projected service-account token found in a pod's directory, and shown to belong to
/// that pod: signed by the cluster, and its `kubernetes.io.pod.uid` claim is the directory's
/// pod UID.
public struct PodToken: Sendable {
    /// The pod (lowercase, dashes).
    public var podUID: String
    /// The projected volume it was found in, and the file's name in it.
    public var volume: String
    public var file: String
    /// The token.
    public var assertion: Assertion
    /// Its service account.
    public var account: ServiceAccount
    /// What a token service sees.
    public var subject: AssertionSubject

    /// `volume/file`, how a request names it.
    public var location: String { "\(volume)/\(file)" }

    /// The token in `text` if it is a service-account token for `audience`, bound to pod
    /// `podUID`, of the service account its subject names, and signed by the cluster (asked
    /// of `verifier` last, unless `known`: a token already accepted); nil for anything else
    /// (the default API token, a token of another audience, garbage, a token naming another
    /// pod, a forgery).
    public init?(
        text: String, podUID: String, volume: String, file: String, audience: String, loadedAt: Date,
        verifier: any ServiceAccountTokenVerifier, known: Set<String> = []
    ) {
        let jwt = text.trimmed()
        guard let assertion = try? Assertion(jwt: jwt, origin: "pod \(podUID) \(volume)/\(file)", loadedAt: loadedAt) else { return nil }
        let claims = assertion.claims
        guard claims.audiences.contains(audience), let issuer = claims.issuer, let subject = claims.subject,
            let kubernetes = claims.kubernetes, kubernetes.podUID?.lowercased() == podUID,
            subject == "system:serviceaccount:\(kubernetes.namespace):\(kubernetes.serviceAccountName)",
            known.contains(jwt) || verifier.isSignedByCluster(assertion)
        else { return nil }
        self.podUID = podUID
        self.volume = volume
        self.file = file
        self.assertion = assertion
        self.account = ServiceAccount(namespace: kubernetes.namespace, name: kubernetes.serviceAccountName)
        self.subject = AssertionSubject(issuer: issuer, subject: subject, audience: audience)
    }
}

/// The projected service-account tokens of the pods on this node, kept current by
/// `KubeletPodWatcher`. Read by the broker for every pod caller; written only by the watcher.
public final class PodTokenRegistry: Sendable {
    private struct State {
        /// Every pod directory seen, with its qualifying tokens (often none).
        var pods: [String: [PodToken]] = [:]
        /// The pods holding a token of each subject.
        var bySubject: [AssertionSubject: Set<String>] = [:]
    }

    private let state = Mutex(State())

    /// An empty registry.
    public init() {}

    /// Records what pod `uid`'s directory holds now.
    public func update(pod uid: String, tokens: [PodToken]) {
        state.withLock { state in
            Self.forget(uid, in: &state)
            state.pods[uid] = tokens
            for token in tokens { state.bySubject[token.subject, default: []].insert(uid) }
        }
    }

    /// Forgets pod `uid` (its directory is gone).
    public func remove(pod uid: String) {
        state.withLock { Self.forget(uid, in: &$0) }
    }

    /// Every pod UID known.
    public var podUIDs: [String] { state.withLock { Array($0.pods.keys) } }

    private static func forget(_ uid: String, in state: inout State) {
        guard let old = state.pods.removeValue(forKey: uid) else { return }
        for token in old {
            state.bySubject[token.subject]?.remove(uid)
            if state.bySubject[token.subject]?.isEmpty == true { state.bySubject[token.subject] = nil }
        }
    }

    /// Pod `uid`'s tokens; nil when no such pod directory exists on this node.
    public func tokens(ofPod uid: String) -> [PodToken]? {
        state.withLock { $0.pods[uid] }
    }

    /// The assertion for `subject` that expires last, among all pods that hold one.
    public func freshestAssertion(for subject: AssertionSubject) -> Assertion? {
        state.withLock { state in
            var best: Assertion?
            for uid in state.bySubject[subject] ?? [] {
                for token in state.pods[uid] ?? [] where token.subject == subject {
                    if (token.assertion.claims.expiresAt ?? .distantPast) > (best?.claims.expiresAt ?? .distantPast) { best = token.assertion }
                }
            }
            return best
        }
    }

    /// Whether any pod holds a token for `subject`.
    public func hasPods(for subject: AssertionSubject) -> Bool {
        state.withLock { $0.bySubject[subject] != nil }
    }

    /// Pods known, and qualifying tokens among them.
    public var counts: (pods: Int, tokens: Int) {
        state.withLock { state in (state.pods.count, state.pods.values.reduce(0) { $0 + $1.count }) }
    }
}
