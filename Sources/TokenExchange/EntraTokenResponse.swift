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
        guard let object = jsonObject(response.body) else {
            throw TokenExchangeError(code: .upstreamUnavailable, message: "the token service answered 200 with a body that is not a JSON object", isRetryable: true)
        }
        guard let token = object["access_token"] as? String, !token.isEmpty else {
            throw TokenExchangeError(code: .upstreamUnavailable, message: "the token service answered 200 without 'access_token'", isRetryable: true)
        }
        guard let expiresIn = seconds(object["expires_in"]), expiresIn > 0 else {
            throw TokenExchangeError(code: .upstreamUnavailable, message: "the token service answered 200 without a positive 'expires_in'", isRetryable: true)
        }
        guard expiresIn <= maximumLifetime else {
            throw TokenExchangeError(
                code: .upstreamUnavailable, message: "the token service answered 200 with 'expires_in' beyond one year; refusing a token with an implausible lifetime",
                isRetryable: true)
        }
        let secrets = [token, assertion.jwt]
        let refreshIn = seconds(object["refresh_in"]).flatMap { $0 > 0 && $0 < expiresIn ? $0 : nil }
        let extExpiresIn = seconds(object["ext_expires_in"]).flatMap { $0 > 0 && $0 <= maximumLifetime ? $0 : nil }
        return AccessToken(
            value: token,
            // Handed to callers: an identifier such as "Bearer", or the default.
            tokenType: UntrustedText.identifier(object["token_type"] as? String, redacting: secrets, limit: 64) ?? "Bearer",
            issuedAt: now,
            expiresAt: now.addingTimeInterval(expiresIn),
            refreshAt: refreshIn.map { now.addingTimeInterval($0) },
            extendedExpiresAt: extExpiresIn.map { now.addingTimeInterval($0) }
        )
    }

    /// The typed error for a non-200 answer.
    static func error(
        for response: UpstreamResponse,
        configuration: EntraConfiguration,
        scope: Scope,
        assertion: Assertion,
        now: Date
    ) -> TokenExchangeError {
        let body = jsonObject(response.body)
        // Entra echoes what it was sent; everything it says passes through UntrustedText.
        let secrets = [assertion.jwt]
        let upstream = TokenExchangeError.Upstream(
            status: response.status,
            error: (body?["error"] as? String).map { UntrustedText.sanitize($0, redacting: secrets, limit: 64) },
            codes: (body?["error_codes"] as? [Any])?.compactMap { JSONNumber.double($0).flatMap { abs($0) < 1e15 ? Int($0) : nil } } ?? [],
            traceId: UntrustedText.identifier(body?["trace_id"] as? String, redacting: secrets),
            correlationId: UntrustedText.identifier(body?["correlation_id"] as? String, redacting: secrets)
        )
        let summary = (body?["error_description"] as? String).map { UntrustedText.sanitize(firstSentences($0), redacting: secrets) } ?? upstream.error
        let codeText = upstream.codes.first.map { "AADSTS\($0)" } ?? "HTTP \(response.status)"

        if response.status == 429 {
            let wait = RetryAfter.parse(response.header("Retry-After"), now: now)
            let waitText = wait.map { " (Retry-After: \($0.components.seconds) s)" } ?? ""
            return TokenExchangeError(
                code: .throttled,
                message: "the token service is throttling requests\(waitText); serving cached tokens where possible",
                isRetryable: true, retryAfter: wait, upstream: upstream)
        }
        if response.status >= 500 || body == nil && response.status != 400 && response.status != 401 {
            return TokenExchangeError(
                code: .upstreamUnavailable,
                message: "the token service failed with HTTP \(response.status)\(summary.map { ": \($0)" } ?? "")",
                isRetryable: true, upstream: upstream)
        }

        let claims = assertion.claims
        let who = "iss='\(claims.issuer ?? "-")', sub='\(claims.subject ?? "-")', aud='\(claims.audiences.joined(separator: ","))'"
        let hint: String
        var retryable = false
        switch upstream.codes.first {
        case 70021, 700211, 700212, 700213:
            let part = [700211: "issuer", 700212: "audience", 700213: "subject"][upstream.codes.first ?? 0]
            hint = "no federated identity credential of app \(configuration.clientId) matches the assertion"
                + (part.map { " (\($0) differs)" } ?? "")
                + "; the assertion has \(who). Add a federated credential with exactly these values "
                + "(they are case-sensitive); a new one can take a few minutes to propagate."
        case 700024:
            let exp = claims.expiresAt.map { "exp=\(Int($0.timeIntervalSince1970)) (\(Timestamp.iso8601($0)))" } ?? "no exp"
            let age = claims.issuedAt.map { "issued \(Int(now.timeIntervalSince($0))) s ago" } ?? "no iat"
            hint = "the assertion from \(assertion.origin) is outside its valid time range: \(exp), \(age). "
                + "The file is stale: is the projected token still being rotated?"
            retryable = true
        case 70023:
            hint = "the assertion from \(assertion.origin) has a lifetime longer than Entra accepts; issue it with a shorter expirationSeconds"
        case 50027:
            hint = "the token service could not parse the assertion from \(assertion.origin) as a JWT"
        case 700027:
            hint = "the assertion's signature did not verify against the keys published by its issuer (\(who)); "
                + "is the issuer's JWKS current and publicly reachable?"
        case 90061:
            hint = "the token service could not fetch the issuer's OIDC discovery document or JWKS for iss='\(claims.issuer ?? "-")'"
            retryable = true
        case 700016:
            hint = "application \(configuration.clientId) was not found in tenant \(configuration.tenantId); check clientId/AZURE_CLIENT_ID and tenantId/AZURE_TENANT_ID"
        case 90002:
            hint = "tenant \(configuration.tenantId) was not found; check tenantId/AZURE_TENANT_ID and the authority host"
        case 1002012, 70011:
            hint = "scope '\(scope.value)' is not valid for this flow; use '<resource>/.default'"
        case 50196:
            hint = "the token service detected a request loop; requests are being repeated too fast"
            retryable = true
        default:
            hint = "the token service rejected the exchange"
        }
        return TokenExchangeError(
            code: .upstreamRejected,
            message: "\(codeText): " + TokenExchangeError.sentences(hint, summary.map { "Upstream said: \($0)" }),
            isRetryable: retryable, upstream: upstream)
    }

    static func jsonObject(_ body: [UInt8]) -> [String: Any]? {
        guard !body.isEmpty else { return nil }
        return UntypedJSON.object(body)
    }

    /// The longest lifetime taken at face value (one year): beyond it the numbers would
    /// overflow the integer conversions downstream, and no token service issues such tokens.
    static let maximumLifetime: TimeInterval = 365 * 24 * 3600

    /// Numbers arrive as JSON numbers from Entra and as strings from some STSs; only
    /// finite values count ("inf" and "1e400" parse as infinity).
    static func seconds(_ value: Any?) -> TimeInterval? {
        if let number = JSONNumber.double(value) { return number }
        return (value as? String).flatMap(TimeInterval.init).flatMap { $0.isFinite ? $0 : nil }
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

/// Parses `Retry-After`: delta-seconds or an HTTP date.
public enum RetryAfter {
    /// The wait, clamped to 0…1 h; nil when absent or unreadable.
    public static func parse(_ value: String?, now: Date) -> Duration? {
        guard let value = value?.trimmingWhitespace(), !value.isEmpty else { return nil }
        if let seconds = Int(value) { return .seconds(min(max(seconds, 0), 3600)) }
        guard let date = HTTPDate.parse(value) else { return nil }
        return .seconds(min(max(Int(date.timeIntervalSince(now).rounded(.up)), 0), 3600))
    }
}

/// An HTTP date in the form servers send (RFC 9110 §5.6.7 IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`), read without `DateFormatter`: no locale, no ICU,
/// and nothing Foundation keeps behind (its formatter leaked a character set on some
/// malformed dates, which the fuzzer found). The two obsolete forms are not accepted;
/// `Retry-After` then counts as absent.
public enum HTTPDate {
    public static func parse(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        // "Sun, 06 Nov 1994 08:49:37 GMT": 29 bytes, separators at fixed places.
        guard bytes.count == 29, bytes[3] == UInt8(ascii: ","), bytes[4] == 0x20, bytes[7] == 0x20, bytes[11] == 0x20,
            bytes[16] == 0x20, bytes[19] == UInt8(ascii: ":"), bytes[22] == UInt8(ascii: ":"), bytes[25] == 0x20,
            bytes[26...] == Array("GMT".utf8)[...],
            Self.dayNames.contains(String(decoding: bytes[0..<3], as: UTF8.self)),
            let month = Self.monthNames.firstIndex(of: String(decoding: bytes[8..<11], as: UTF8.self)).map({ $0 + 1 }),
            let day = DateFields.decimal(bytes[5..<7]), let year = DateFields.decimal(bytes[12..<16]),
            let hour = DateFields.decimal(bytes[17..<19]), let minute = DateFields.decimal(bytes[20..<22]),
            let second = DateFields.decimal(bytes[23..<25]),
            year >= 1970, (1...DateFields.daysIn(month: month, year: year)).contains(day), hour < 24, minute < 60, second <= 60
        else { return nil }
        let days = DateFields.daysSinceEpoch(year: year, month: month, day: day)
        return Date(timeIntervalSince1970: TimeInterval(((days * 24 + hour) * 60 + minute) * 60 + min(second, 59)))
    }

    private static let dayNames: Set = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    private static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
}
