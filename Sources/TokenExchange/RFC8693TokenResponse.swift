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
        guard let body = UpstreamJSON.decode(response.body) else {
            throw malformed("with a body that is not a JSON object")
        }
        guard let token = body.accessToken, !token.isEmpty else {
            throw malformed("without 'access_token'")
        }
        var warnings: [String] = []
        let secrets = RFC8693TokenRequest.secrets(configuration: configuration, assertion: assertion) + [token]

        let issuedTokenType = body.issuedTokenType
        if issuedTokenType == nil {
            warnings.append(
                "the token exchange service left out 'issued_token_type', which RFC 8693 §2.2.1 requires; the token was accepted as \(configuration.requestedTokenType ?? "an access token")"
            )
        } else if let requested = configuration.requestedTokenType, let issuedTokenType, issuedTokenType != requested {
            warnings.append(
                "requested_token_type was \(requested) but the service issued \(UntrustedText.sanitize(issuedTokenType, redacting: secrets, limit: 120))"
            )
        }
        let tokenType = try self.tokenType(body.tokenType, secrets: secrets, warnings: &warnings)
        let expiresAt = try self.expiresAt(body, token: token, now: now, warnings: &warnings)
        if let granted = body.scope, !scope.value.isEmpty, granted != scope.value {
            warnings.append(
                "the token exchange service granted scope '\(UntrustedText.sanitize(granted, redacting: secrets, limit: 200))', not the requested '\(scope.value)'"
            )
        }
        return Outcome(
            token: AccessToken(value: token, tokenType: tokenType, issuedAt: now, expiresAt: expiresAt),
            issuedTokenType: issuedTokenType,
            warnings: warnings)
    }

    /// `Bearer` or `N_A` (any case; missing is Bearer, with a warning); any other type cannot be served.
    private static func tokenType(_ sent: String?, secrets: [String], warnings: inout [String]) throws(TokenExchangeError) -> String {
        switch sent.map({ $0.lowercased() }) {
        case nil:
            warnings.append("the token exchange service left out 'token_type', which RFC 8693 §2.2.1 requires; treating the token as Bearer")
            return "Bearer"
        case "bearer":
            return "Bearer"
        case "n_a":
            return "N_A"
        case let other?:
            throw TokenExchangeError(
                code: .upstreamUnavailable,
                message: "the token exchange service issued a token of type '\(UntrustedText.sanitize(other, redacting: secrets, limit: 40))'; "
                    + "only Bearer and N_A tokens can be served (a proof-of-possession token needs a key the caller does not have)",
                isRetryable: false, upstream: .init(status: 200))
        }
    }

    /// From `expires_in` (a number or a numeric string), else — RFC 8693 makes it only
    /// RECOMMENDED — from the issued JWT's `exp`, with a warning.
    private static func expiresAt(_ body: UpstreamJSON, token: String, now: Date, warnings: inout [String]) throws(TokenExchangeError) -> Date {
        if body.hasExpiresIn {
            guard let expiresIn = body.expiresIn?.value, expiresIn > 0 else {
                throw malformed("with an 'expires_in' that is not a positive number of seconds")
            }
            guard expiresIn <= AccessToken.maximumLifetime else {
                throw malformed("with 'expires_in' beyond one year; refusing a token with an implausible lifetime")
            }
            return now.addingTimeInterval(expiresIn)
        }
        guard let claims = try? JWTClaims(jwt: token) else {
            throw malformed(
                "without 'expires_in', and the token is not a JWT whose 'exp' could say how long it lives; refusing a token of unknown lifetime")
        }
        guard let exp = claims.expiresAt else {
            throw malformed("without 'expires_in', and the issued JWT has no 'exp'; refusing a token of unknown lifetime")
        }
        try AccessToken.checkStatedExpiry(
            exp, now: now,
            past: { _ in
                "without 'expires_in', and the issued JWT's exp=\(Int(exp.timeIntervalSince1970)) (\(Timestamp.iso8601(exp))) is already past; check the clocks of this host and the token service"
            },
            tooFar: "without 'expires_in', and the issued JWT's 'exp' is more than a year away; refusing a token with an implausible lifetime",
            malformed: malformed)
        warnings.append(
            "the token exchange service left out 'expires_in'; the lifetime was taken from the issued JWT's exp=\(Int(exp.timeIntervalSince1970))")
        return exp
    }

    private static func malformed(_ what: String) -> TokenExchangeError {
        TokenExchangeError(
            code: .upstreamUnavailable, message: "the token exchange service answered 200 \(what)", isRetryable: true,
            upstream: .init(status: 200))
    }

    /// The typed error for a non-200 answer: throttled (429), unavailable (5xx, or no OAuth
    /// error with a status other than 400/401/403), else rejected with the OAuth error explained.
    static func error(
        for response: UpstreamResponse,
        configuration: RFC8693Configuration,
        scope: Scope,
        assertion: Assertion,
        now: Date
    ) -> TokenExchangeError {
        let body = UpstreamJSON.decode(response.body)
        let secrets = RFC8693TokenRequest.secrets(configuration: configuration, assertion: assertion)
        let errorCode = body?.error.map { UntrustedText.sanitize($0, redacting: secrets, limit: 64) }
        let said = body?.errorDescription.map { "Upstream said: \(UntrustedText.sanitize($0, redacting: secrets))" }
        let see = body?.errorURI.map { "See \(UntrustedText.sanitize($0, redacting: secrets, limit: 200))" }
        let traceId = UntrustedText.identifier(response.header("X-Request-Id"), redacting: secrets)
        let failure = UpstreamFailure(response: response, upstream: .init(status: response.status, error: errorCode, traceId: traceId), now: now)

        switch UpstreamFailure.classify(status: response.status, understood: errorCode != nil, authoritative: [400, 401, 403]) {
        case .throttled:
            return failure.throttled { "the token exchange service is throttling requests\($0); serving cached tokens where possible" }
        case .unavailable:
            let what = errorCode.map { " (\($0))" } ?? (body == nil && !response.body.isEmpty ? " and a body that is not an OAuth error" : "")
            return failure.unavailable(
                TokenExchangeError.sentences(
                    "the token exchange service at \(endpointForMessages(configuration)) failed with HTTP \(response.status)\(what)", said))
        case .rejected:
            let hint = hint(errorCode, status: response.status, configuration: configuration, scope: scope, assertion: assertion)
            return failure.rejected("HTTP \(response.status)\(errorCode.map { " \($0)" } ?? "")", hint, said: said, see)
        }
    }

    /// What a refusal with OAuth error `errorCode` means for this configuration and assertion.
    private static func hint(
        _ errorCode: String?, status: Int, configuration: RFC8693Configuration, scope: Scope, assertion: Assertion
    ) -> UpstreamFailure.Hint {
        let subject = "the subject token from \(assertion.origin) (\(assertion.claims.federationFields))"
        switch errorCode {
        case "invalid_grant", "invalid_request":
            return .init(
                text: "the token exchange service refused \(subject); "
                    + "check that it trusts this issuer and allows this subject and audience, and that the token is not expired"
                    + (configuration.subjectTokenType == RFC8693Configuration.jwtTokenType
                        ? "" : " (subject_token_type \(configuration.subjectTokenType))"))
        case "invalid_client":
            return .init(
                text: configuration.clientId.map { "client authentication as '\($0)' failed; check clientId and clientSecretFile" }
                    ?? "the token exchange service requires client authentication; configure clientId and clientSecretFile")
        case "unauthorized_client":
            return .init(text: "the client \(configuration.clientId.map { "'\($0)' " } ?? "")is not allowed to use the token-exchange grant")
        case "unsupported_grant_type":
            return .init(
                text: "the service at \(endpointForMessages(configuration)) does not support RFC 8693 token exchange; is tokenEndpoint right?")
        case "invalid_target":
            let target = [configuration.audience.map { "audience '\($0)'" }, configuration.resource.map { "resource '\($0)'" }].compactMap { $0 }
            return .init(
                text: "the token exchange service will not issue a token for " + (target.isEmpty ? "this target" : target.joined(separator: " and ")))
        case "invalid_scope":
            return .init(text: "the token exchange service will not grant scope '\(scope.value)'")
        case "temporarily_unavailable":
            return .init(text: "the token exchange service is temporarily unavailable", isRetryable: true)
        case nil:
            return .init(
                text: status == 400
                    ? "the token exchange service refused the request without an OAuth error body"
                    : "the token exchange service refused the request for \(subject)")
        default:
            return .init(text: "the token exchange service rejected the exchange of \(subject)")
        }
    }

    /// Scheme, host and path of the endpoint (never a query).
    static func endpointForMessages(_ configuration: RFC8693Configuration) -> String {
        String(configuration.tokenEndpoint.prefix { $0 != "?" })
    }
}
