import BrokerServer
import TokenBrokerProtocol
import TokenExchange

/// The one place that matches what a token request asks for (access tokens or AWS
/// credentials) with what identities give: every route — the socket's `token` op and
/// `/v1/token`, the App Service, IMDS and AWS container endpoints, `tokenbroker get` — goes
/// through `Broker.resolve`, which asks here.
///
/// A request that names no identity chooses only among the caller's identities of the kind
/// it asks for, so an AWS identity never makes an Azure SDK's request ambiguous, nor the
/// reverse. A request that names one of the other kind is told so.
enum IdentityChoice {
    /// What a request asks for when its route does not say: a scope (or resource) means an
    /// access token; none means AWS credentials, the only thing asked for without a scope.
    static func wanted(scope: String?) -> CredentialKind {
        scope == nil ? .awsCredentials : .accessToken
    }

    /// The identity among `allowed` (those the caller may use) that gives `wanted`, or why
    /// there is none. `inferred`: the route did not say, so no scope also may mean a
    /// forgotten scope, and the message says both. `naming`: how the route's caller names an
    /// identity (`TokenRoute`).
    static func choose(
        among allowed: [Broker.Identity], wanted: CredentialKind, inferred: Bool, caller: PeerCredentials, naming: String = TokenRoute.socket.naming
    ) -> Result<Broker.Identity, WireError> {
        let fitting = allowed.filter { $0.configuration.exchange.gives == wanted }
        if fitting.count == 1 { return .success(fitting[0]) }
        if fitting.count > 1 {
            let names = fitting.map(\.configuration.name).sorted().joined(separator: ", ")
            return .failure(
                WireError(
                    code: .identityRequired, message: "several identities that give \(wanted.phrase) are available to you (\(names)); \(naming)"))
        }
        if allowed.isEmpty {
            return .failure(WireError(code: .forbidden, message: "\(describe(caller)) may not use any identity"))
        }
        if wanted == .awsCredentials && inferred {
            // Without a scope and without an AWS identity, the caller most likely forgot the scope.
            return .failure(WireError(code: .badRequest, message: "op 'token' needs 'scope' (or IMDS-style 'resource')"))
        }
        let others = allowed.map(\.configuration.name).sorted().joined(separator: ", ")
        let otherKind: CredentialKind = wanted == .accessToken ? .awsCredentials : .accessToken
        return .failure(
            WireError(
                code: .forbidden,
                message: "no identity that gives \(wanted.phrase) is available to \(describe(caller)); yours give \(otherKind.phrase) (\(others))"))
    }

    /// Why `identity`, named by the request, cannot serve it, or nil when it can.
    static func mismatch(_ identity: Broker.Identity, wanted: CredentialKind, scope: String?, inferred: Bool) -> WireError? {
        let exchange = identity.configuration.exchange
        let name = identity.configuration.name
        switch (exchange.gives, wanted) {
        case (.awsCredentials, _):
            // The role ARN as a scope is the cache's own key for it: accepted.
            guard let scope, scope != exchange.implicitScope?.value else { return nil }
            return WireError(
                code: .badRequest,
                message:
                    "identity '\(name)' gives AWS credentials for \(exchange.implicitScope?.value ?? "its role"), not access tokens; leave out 'scope'"
            )
        case (.accessToken, .accessToken):
            return nil
        case (.accessToken, .awsCredentials):
            return WireError(
                code: .badRequest,
                message: "identity '\(name)' gives access tokens, not AWS credentials"
                    + (inferred ? "; op 'token' needs 'scope' (or IMDS-style 'resource')" : ""))
        }
    }

    /// How messages name a caller: what is known of it. A TCP caller has the uid of its
    /// socket (from the kernel's socket table) and no pid.
    static func describe(_ peer: PeerCredentials) -> String {
        let uid = peer.uid == UInt32.max ? "caller of unknown uid" : "caller uid \(peer.uid)"
        return peer.pid > 0 ? "\(uid) (pid \(peer.pid))" : uid
    }
}
