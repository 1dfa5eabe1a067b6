public import FoundationEssentials
import Glibc

/// Parses Entra's token endpoint answers into an `AccessToken` or an actionable
/// `TokenExchangeError`.
public enum EntraTokenResponse {
    /// Turns `response` into a token, or throws an error that explains the failure
    /// in terms of `assertion` (its `iss`/`sub`/`aud`/`exp`, its origin).
    ///
    /// - Parameter now: our wall clock when the response arrived.
    public static func parse(
        _ response: UpstreamResponse,
        configuration: EntraConfiguration,
        scope: Scope,
        assertion: Assertion,
        now: Date
    ) throws(TokenExchangeError) -> AccessToken {
        guard response.status == 200 else {
            throw error(for: response, configuration: configuration, scope: scope, assertion: assertion, now: now)
        }
        guard let body = UpstreamJSON.decode(response.body) else {
            throw TokenExchangeError(
                code: .upstreamUnavailable, message: "the token service answered 200 with a body that is not a JSON object", isRetryable: true)
        }
        guard let token = body.accessToken, !token.isEmpty else {
            throw TokenExchangeError(code: .upstreamUnavailable, message: "the token service answered 200 without 'access_token'", isRetryable: true)
        }
        guard let expiresIn = body.expiresIn?.value, expiresIn > 0 else {
            throw TokenExchangeError(
                code: .upstreamUnavailable, message: "the token service answered 200 without a positive 'expires_in'", isRetryable: true)
        }
        guard expiresIn <= AccessToken.maximumLifetime else {
            throw TokenExchangeError(
                code: .upstreamUnavailable,
                message: "the token service answered 200 with 'expires_in' beyond one year; refusing a token with an implausible lifetime",
                isRetryable: true)
        }
        let secrets = [token, assertion.jwt]
        let refreshIn = body.refreshIn.map(\.value).flatMap { $0 > 0 && $0 < expiresIn ? $0 : nil }
        let extExpiresIn = body.extExpiresIn.map(\.value).flatMap { $0 > 0 && $0 <= AccessToken.maximumLifetime ? $0 : nil }
        return AccessToken(
            value: token,
            // Handed to callers: an identifier such as "Bearer", or the default.
            tokenType: UntrustedText.identifier(body.tokenType, redacting: secrets, limit: 64) ?? "Bearer",
            issuedAt: now,
            expiresAt: now.addingTimeInterval(expiresIn),
            refreshAt: refreshIn.map { now.addingTimeInterval($0) },
            extendedExpiresAt: extExpiresIn.map { now.addingTimeInterval($0) }
        )
    }

    /// The typed error for a non-200 answer: throttled (429), unavailable (5xx, or a body that
    /// is not JSON with a status other than 400/401), else rejected with the AADSTS code explained.
    static func error(
        for response: UpstreamResponse,
        configuration: EntraConfiguration,
        scope: Scope,
        assertion: Assertion,
        now: Date
    ) -> TokenExchangeError {
        let body = UpstreamJSON.decode(response.body)
        // Entra echoes what it was sent; everything it says passes through UntrustedText.
        let secrets = [assertion.jwt]
        let upstream = TokenExchangeError.Upstream(
            status: response.status,
            error: body?.error.map { UntrustedText.sanitize($0, redacting: secrets, limit: 64) },
            codes: body?.errorCodes ?? [],
            traceId: UntrustedText.identifier(body?.traceId, redacting: secrets),
            correlationId: UntrustedText.identifier(body?.correlationId, redacting: secrets)
        )
        let summary = body?.errorDescription.map { UntrustedText.sanitize(firstSentences($0), redacting: secrets) } ?? upstream.error
        let failure = UpstreamFailure(response: response, upstream: upstream, now: now)
        switch UpstreamFailure.classify(status: response.status, understood: body != nil, authoritative: [400, 401]) {
        case .throttled:
            return failure.throttled { "the token service is throttling requests\($0); serving cached tokens where possible" }
        case .unavailable:
            return failure.unavailable("the token service failed with HTTP \(response.status)\(summary.map { ": \($0)" } ?? "")")
        case .rejected:
            let request = AADSTS.Request(configuration: configuration, scope: scope, assertion: assertion, now: now)
            let hint = AADSTS.hint(upstream.codes.first, for: request)
            let codeText = upstream.codes.first.map { "AADSTS\($0)" } ?? "HTTP \(response.status)"
            return failure.rejected(codeText, hint, said: summary.map { "Upstream said: \($0)" })
        }
    }

    /// The description up to Entra's " Trace ID:" trailer (`UntrustedText` cuts it to length:
    /// cutting here could leave half a secret it no longer recognises).
    static func firstSentences(_ description: String) -> String {
        var text = Substring(description)
        for marker in ["\r\n", "\n", " Trace ID:"] {
            if let range = text.firstRange(of: marker) { text = text[..<range.lowerBound] }
        }
        return String(text)
    }
}
