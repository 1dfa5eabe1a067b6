public import FoundationEssentials
import Glibc
public import TokenExchange

/// The assertion of one service account on this node, for its cached tokens: the token
/// that expires last among the pods that hold one with the same issuer, subject and
/// audience. Replicas share it; when the pod whose token was used goes away, another's is.
public struct ServiceAccountAssertionSource: AssertionSource {
    let registry: PodTokenRegistry
    let subject: AssertionSubject
    let account: ServiceAccount
    let now: @Sendable () -> Date

    /// A source reading `registry` for `subject` (of `account`, for messages).
    public init(registry: PodTokenRegistry, subject: AssertionSubject, account: ServiceAccount, now: @escaping @Sendable () -> Date = Date.init) {
        self.registry = registry
        self.subject = subject
        self.account = account
        self.now = now
    }

    public func currentAssertion() async throws(TokenExchangeError) -> Assertion {
        guard let assertion = registry.freshestAssertion(for: subject) else {
            throw .assertionUnavailable(
                origin: "service account \(account)", reason: "no pod of it on this node holds a projected token for \(subject.audience) any more")
        }
        try assertion.checkValidity(at: now())
        return assertion
    }
}
