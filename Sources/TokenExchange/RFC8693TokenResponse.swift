public import FoundationEssentials
import Glibc

/// Parses an RFC 8693 token endpoint's answers into an `AccessToken` or an actionable
/// `TokenExchangeError`.
///
/// Success (RFC 8693 §2.2.1): `access_token`, `issued_token_type`, `token_type` (`Bearer`
/// or `N_A`), `expires_in` (a number, or a numeric string as some STSs send), `scope`.
/// Errors (RFC 6749 §5.2): `error`, `error_description`, `error_uri`.
public enum RFC8693TokenResponse {
    /// A parsed success, with what the operator should know about a loosely conforming answer.
    public struct Outcome: Sendable {
        /// The token.
        public var token: AccessToken
        /// `issued_token_type` as sent; nil when the service left it out.
        public var issuedTokenType: String?
        /// Deviations from RFC 8693 that were tolerated (a missing `issued_token_type`, a
        /// lifetime taken from the token's `exp`, …), one sentence each; token-free.
        public var warnings: [String]
    }

    /// Turns `response` into a token, or throws an error that explains the failure in terms
    /// of the configuration and of `assertion`'s claims (never its text).
    ///
    /// - Parameter now: our wall clock when the response arrived.
    public static func parse(
        _ response: UpstreamResponse,
        configuration: RFC8693Configuration,
        scope: Scope,
        assertion: Assertion,
        now: Date
    ) throws(TokenExchangeError) -> Outcome {
        guard response.status == 200 else {
            throw error(for: response, configuration: configuration, scope: scope, assertion: assertion, now: now)
        }
        func malformed(_ what: String) -> TokenExchangeError {
            TokenExchangeError(
                code: .upstreamUnavailable, message: "the token exchange service answered 200 \(what)", isRetryable: true,
                upstream: .init(status: 200))
        }
        guard let object = EntraTokenResponse.jsonObject(response.body) else {
            throw malformed("with a body that is not a JSON object")
        }
        guard let token = object["access_token"] as? String, !token.isEmpty else {
            throw malformed("without 'access_token'")
        }
        var warnings: [String] = []
        let secrets = RFC8693TokenRequest.secrets(configuration: configuration, assertion: assertion) + [token]

        let issuedTokenType = object["issued_token_type"] as? String
        if issuedTokenType == nil {
            warnings.append("the token exchange service left out 'issued_token_type', which RFC 8693 §2.2.1 requires; the token was accepted as \(configuration.requestedTokenType ?? "an access token")")
        } else if let requested = configuration.requestedTokenType, let issuedTokenType, issuedTokenType != requested {
            warnings.append("requested_token_type was \(requested) but the service issued \(UntrustedText.sanitize(issuedTokenType, redacting: secrets, limit: 120))")
        }

        let tokenType: String
        switch (object["token_type"] as? String).map({ $0.lowercased() }) {
        case nil:
            tokenType = "Bearer"
            warnings.append("the token exchange service left out 'token_type', which RFC 8693 §2.2.1 requires; treating the token as Bearer")
        case "bearer":
            tokenType = "Bearer"
        case "n_a":
            tokenType = "N_A"
        case let other?:
            throw TokenExchangeError(
                code: .upstreamUnavailable,
                message: "the token exchange service issued a token of type '\(UntrustedText.sanitize(other, redacting: secrets, limit: 40))'; "
                    + "only Bearer and N_A tokens can be served (a proof-of-possession token needs a key the caller does not have)",
                isRetryable: false, upstream: .init(status: 200))
        }

        let expiresAt: Date
        if let rawExpiresIn = object["expires_in"], !(rawExpiresIn is JSONNull) {
            guard let expiresIn = EntraTokenResponse.seconds(rawExpiresIn), expiresIn > 0 else {
                throw malformed("with an 'expires_in' that is not a positive number of seconds")
            }
            guard expiresIn <= EntraTokenResponse.maximumLifetime else {
                throw malformed("with 'expires_in' beyond one year; refusing a token with an implausible lifetime")
            }
            expiresAt = now.addingTimeInterval(expiresIn)
        } else {
            // RFC 8693 makes expires_in only RECOMMENDED: a JWT says when it expires itself.
            guard let claims = try? JWTClaims(jwt: token) else {
                throw malformed("without 'expires_in', and the token is not a JWT whose 'exp' could say how long it lives; refusing a token of unknown lifetime")
            }
            guard let exp = claims.expiresAt else {
                throw malformed("without 'expires_in', and the issued JWT has no 'exp'; refusing a token of unknown lifetime")
            }
            let remaining = exp.timeIntervalSince(now)
            guard remaining > 0 else {
                throw malformed("without 'expires_in', and the issued JWT's exp=\(Int(exp.timeIntervalSince1970)) (\(Timestamp.iso8601(exp))) is already past; check the clocks of this host and the token service")
            }
            guard remaining <= EntraTokenResponse.maximumLifetime else {
                throw malformed("without 'expires_in', and the issued JWT's 'exp' is more than a year away; refusing a token with an implausible lifetime")
            }
            expiresAt = exp
            warnings.append("the token exchange service left out 'expires_in'; the lifetime was taken from the issued JWT's exp=\(Int(exp.timeIntervalSince1970))")
        }

        if let granted = object["scope"] as? String, !scope.value.isEmpty, granted != scope.value {
            warnings.append("the token exchange service granted scope '\(UntrustedText.sanitize(granted, redacting: secrets, limit: 200))', not the requested '\(scope.value)'")
        }
        return Outcome(
            token: AccessToken(value: token, tokenType: tokenType, issuedAt: now, expiresAt: expiresAt),
            issuedTokenType: issuedTokenType,
            warnings: warnings)
    }

    /// The typed error for a non-200 answer.
    static func error(
        for response: UpstreamResponse,
        configuration: RFC8693Configuration,
        scope: Scope,
        assertion: Assertion,
        now: Date
    ) -> TokenExchangeError {
        let body = EntraTokenResponse.jsonObject(response.body)
        let secrets = RFC8693TokenRequest.secrets(configuration: configuration, assertion: assertion)
        let errorCode = (body?["error"] as? String).map { UntrustedText.sanitize($0, redacting: secrets, limit: 64) }
        let description = (body?["error_description"] as? String).map { UntrustedText.sanitize($0, redacting: secrets) }
        let errorURI = (body?["error_uri"] as? String).map { UntrustedText.sanitize($0, redacting: secrets, limit: 200) }
        let upstream = TokenExchangeError.Upstream(
            status: response.status, error: errorCode,
            traceId: UntrustedText.identifier(response.header("X-Request-Id"), redacting: secrets))
        let said = description.map { "Upstream said: \($0)" }
        let see = errorURI.map { "See \($0)" }

        if response.status == 429 {
            let wait = RetryAfter.parse(response.header("Retry-After"), now: now)
            let waitText = wait.map { " (Retry-After: \($0.components.seconds) s)" } ?? ""
            return TokenExchangeError(
                code: .throttled,
                message: "the token exchange service is throttling requests\(waitText); serving cached tokens where possible",
                isRetryable: true, retryAfter: wait, upstream: upstream)
        }
        let authoritative = [400, 401, 403].contains(response.status)
        if response.status >= 500 || (errorCode == nil && !authoritative) {
            return TokenExchangeError(
                code: .upstreamUnavailable,
                message: TokenExchangeError.sentences(
                    "the token exchange service at \(endpointForMessages(configuration)) failed with HTTP \(response.status)"
                        + (errorCode.map { " (\($0))" } ?? (body == nil && !response.body.isEmpty ? " and a body that is not an OAuth error" : "")),
                    said),
                isRetryable: true, upstream: upstream)
        }

        let claims = assertion.claims
        let who = "iss='\(claims.issuer ?? "-")', sub='\(claims.subject ?? "-")', aud='\(claims.audiences.joined(separator: ","))'"
        let hint: String
        var retryable = false
        switch errorCode {
        case "invalid_grant", "invalid_request":
            hint = "the token exchange service refused the subject token from \(assertion.origin) (\(who)); "
                + "check that it trusts this issuer and allows this subject and audience, and that the token is not expired"
                + (configuration.subjectTokenType == RFC8693Configuration.jwtTokenType ? "" : " (subject_token_type \(configuration.subjectTokenType))")
        case "invalid_client":
            hint = configuration.clientId.map { "client authentication as '\($0)' failed; check clientId and clientSecretFile" }
                ?? "the token exchange service requires client authentication; configure clientId and clientSecretFile"
        case "unauthorized_client":
            hint = "the client \(configuration.clientId.map { "'\($0)' " } ?? "")is not allowed to use the token-exchange grant"
        case "unsupported_grant_type":
            hint = "the service at \(endpointForMessages(configuration)) does not support RFC 8693 token exchange; is tokenEndpoint right?"
        case "invalid_target":
            hint = "the token exchange service will not issue a token for "
                + [configuration.audience.map { "audience '\($0)'" }, configuration.resource.map { "resource '\($0)'" }]
                .compactMap { $0 }.joined(separator: " and ").nonEmpty(or: "this target")
        case "invalid_scope":
            hint = "the token exchange service will not grant scope '\(scope.value)'"
        case "temporarily_unavailable":
            hint = "the token exchange service is temporarily unavailable"
            retryable = true
        case nil:
            hint = response.status == 400 ? "the token exchange service refused the request without an OAuth error body"
                : "the token exchange service refused the request for the subject token from \(assertion.origin) (\(who))"
        default:
            hint = "the token exchange service rejected the exchange of the subject token from \(assertion.origin) (\(who))"
        }
        return TokenExchangeError(
            code: .upstreamRejected,
            message: "HTTP \(response.status)\(errorCode.map { " \($0)" } ?? ""): " + TokenExchangeError.sentences(hint, said, see),
            isRetryable: retryable, upstream: upstream)
    }

    /// Scheme, host and path of the endpoint (never a query).
    static func endpointForMessages(_ configuration: RFC8693Configuration) -> String {
        String(configuration.tokenEndpoint.prefix { $0 != "?" })
    }
}

extension String {
    fileprivate func nonEmpty(or fallback: String) -> String { isEmpty ? fallback : self }
}
