import TokenBrokerProtocol

/// Where a token request came from: what it may ask for, how its caller names an
/// identity (the advice in an `identity_required` message), and the identity served when it
/// names none and the caller may use several. The one place these differ between the
/// socket and the compatibility endpoints, so every message is worded once, for its caller.
struct TokenRoute: Sendable {
    /// What the route asks for; nil lets the request's scope say (`IdentityChoice.wanted`).
    var wanted: CredentialKind?
    /// How this route's caller names an identity.
    var naming: String
    /// `compat.defaultIdentity`: used when the request names no identity and the caller
    /// may use several.
    var defaultIdentity: String?

    /// The socket's `token` op and `/v1/token`.
    static let socket = TokenRoute(wanted: nil, naming: "name one with 'identity'")

    /// The App Service and IMDS endpoints (access tokens).
    static func managedIdentity(defaultIdentity: String?) -> TokenRoute {
        TokenRoute(
            wanted: .accessToken, naming: "pass client_id (AZURE_CLIENT_ID for most SDKs) or set compat.defaultIdentity",
            defaultIdentity: defaultIdentity)
    }

    /// The AWS container credentials endpoint, whose path names the identity.
    static func awsContainer(path: String) -> TokenRoute {
        TokenRoute(wanted: .awsCredentials, naming: "use \(path)/NAME")
    }
}
