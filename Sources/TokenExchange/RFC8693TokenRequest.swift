import FoundationEssentials
import Glibc

/// Builds an OAuth 2.0 Token Exchange request (RFC 8693 §2.1) with the assertion as the
/// subject token.
public enum RFC8693TokenRequest {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`.
    public static let grantType = "urn:ietf:params:oauth:grant-type:token-exchange"

    /// The form fields in the order we send them. Optional parameters that are not
    /// configured are left out, and so is `scope` when the cache scope is empty.
    public static func formFields(configuration: RFC8693Configuration, scope: Scope, assertion: Assertion) -> [(String, String)] {
        var fields: [(String, String)] = [
            ("grant_type", grantType),
            ("subject_token", assertion.jwt),
            ("subject_token_type", configuration.subjectTokenType),
        ]
        if let audience = configuration.audience { fields.append(("audience", audience)) }
        if let resource = configuration.resource { fields.append(("resource", resource)) }
        if !scope.value.isEmpty { fields.append(("scope", scope.value)) }
        if let requested = configuration.requestedTokenType { fields.append(("requested_token_type", requested)) }
        return fields
    }

    /// The complete `POST` to the configured token endpoint, with HTTP Basic client
    /// authentication when a client id and secret are configured.
    public static func make(configuration: RFC8693Configuration, scope: Scope, assertion: Assertion) -> UpstreamRequest {
        let body = FormEncoding.encode(formFields(configuration: configuration, scope: scope, assertion: assertion))
        var headers = [
            HeaderField("Content-Type", "application/x-www-form-urlencoded"),
            HeaderField("Accept", "application/json"),
        ]
        if let authorization = basicAuthorization(configuration) {
            headers.append(HeaderField("Authorization", authorization))
        }
        return UpstreamRequest(method: "POST", url: configuration.tokenEndpoint, headers: headers, body: Array(body.utf8))
    }

    /// What this request carries that must never come back in a message: the subject token,
    /// the client secret as configured and as encoded, and the `Basic` credentials.
    static func secrets(configuration: RFC8693Configuration, assertion: Assertion) -> [String] {
        var secrets = [assertion.jwt]
        if let secret = configuration.clientSecret {
            secrets += [secret, FormEncoding.escape(secret)]
            if let id = configuration.clientId { secrets.append(FormEncoding.escape(id) + ":" + FormEncoding.escape(secret)) }
        }
        if let authorization = basicAuthorization(configuration) { secrets.append(String(authorization.dropFirst("Basic ".count))) }
        return secrets
    }

    /// `Basic base64(urlencode(id):urlencode(secret))`, as RFC 6749 §2.3.1 specifies (the
    /// form-encoding step lets ids and secrets contain `:` and non-ASCII characters).
    static func basicAuthorization(_ configuration: RFC8693Configuration) -> String? {
        guard let id = configuration.clientId, let secret = configuration.clientSecret else { return nil }
        let credentials = FormEncoding.escape(id) + ":" + FormEncoding.escape(secret)
        return "Basic " + Data(credentials.utf8).base64EncodedString()
    }
}
