import Foundation
import TestRandom
import Testing
import TokenExchange

private func parse(_ response: UpstreamResponse, assertion: Assertion = Fixtures.assertion()) throws(TokenExchangeError) -> AccessToken {
    try EntraTokenResponse.parse(response, configuration: Fixtures.configuration, scope: Fixtures.scope, assertion: assertion, now: Fixtures.now)
}

private func failure(_ response: UpstreamResponse, assertion: Assertion = Fixtures.assertion()) -> TokenExchangeError? {
    #expect(throws: TokenExchangeError.self) { try parse(response, assertion: assertion) }
}

@Suite struct EntraSuccessParsing {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var body: String
        var expiresIn: TimeInterval
        var extExpiresIn: TimeInterval?
        var refreshIn: TimeInterval?
        var testDescription: String { name }
    }

    @Test(arguments: [
        Case(name: "numbers", body: Fixtures.success, expiresIn: 3599, extExpiresIn: 3599, refreshIn: nil),
        Case(name: "refresh_in", body: Fixtures.successWithRefreshIn, expiresIn: 86399, extExpiresIn: 86399, refreshIn: 43199),
        Case(name: "strings", body: Fixtures.successAsStrings, expiresIn: 3599, extExpiresIn: 7199, refreshIn: 1799),
        Case(name: "minimal", body: #"{"access_token":"t","expires_in":60}"#, expiresIn: 60, extExpiresIn: nil, refreshIn: nil),
        Case(
            name: "refresh_in beyond expiry ignored", body: #"{"access_token":"t","expires_in":60,"refresh_in":90}"#, expiresIn: 60,
            extExpiresIn: nil, refreshIn: nil),
        // 1 is a JSON number, not `true` (NSNumber 0/1 answer `is Bool` on Linux).
        Case(name: "one second", body: #"{"access_token":"t","expires_in":1,"ext_expires_in":1}"#, expiresIn: 1, extExpiresIn: 1, refreshIn: nil),
        Case(
            name: "refresh_in one second", body: #"{"access_token":"t","expires_in":60,"refresh_in":1}"#, expiresIn: 60, extExpiresIn: nil,
            refreshIn: 1),
        Case(
            name: "refresh_in zero ignored", body: #"{"access_token":"t","expires_in":60,"refresh_in":0}"#, expiresIn: 60, extExpiresIn: nil,
            refreshIn: nil),
    ])
    func timesAreRelativeToReceipt(_ c: Case) throws {
        let token = try parse(Fixtures.response(200, c.body))
        #expect(token.issuedAt == Fixtures.now)
        #expect(token.expiresAt == Fixtures.now.addingTimeInterval(c.expiresIn))
        #expect(token.extendedExpiresAt == c.extExpiresIn.map { Fixtures.now.addingTimeInterval($0) })
        #expect(token.refreshAt == c.refreshIn.map { Fixtures.now.addingTimeInterval($0) })
        #expect(token.tokenType == "Bearer")
    }

    @Test func tokenValueIsTheAccessToken() throws {
        #expect(try parse(Fixtures.response(200, Fixtures.success)).value == Fixtures.accessToken)
    }

    @Test(arguments: [
        Fixtures.successWithoutAccessToken,
        #"{"access_token":"","expires_in":3599}"#,
        #"{"access_token":"t"}"#,
        #"{"access_token":"t","expires_in":0}"#,
        #"{"access_token":"t","expires_in":"soon"}"#,
        #"{"access_token":"t","expires_in":true}"#,
        // Implausible lifetimes are refused, not converted (1e19 s would overflow Int; "inf" is infinity).
        #"{"access_token":"t","expires_in":1e19}"#,
        #"{"access_token":"t","expires_in":"inf"}"#,
        #"{"access_token":"t","expires_in":"1e400"}"#,
        #"{"access_token":"t","expires_in":31536001}"#,
        "[]",
        "<html>OK</html>",
        "",
    ])
    func incompleteSuccessIsRetryableUnavailable(body: String) {
        let error = failure(Fixtures.response(200, body))
        #expect(error?.code == .upstreamUnavailable)
        #expect(error?.isRetryable == true)
    }
}

@Suite struct EntraThrottling {
    @Test func retryAfterSecondsIsKept() {
        let error = failure(Fixtures.response(429, Fixtures.tooManyRequestsText, headers: [HeaderField("Retry-After", "17")]))
        #expect(error?.code == .throttled)
        #expect(error?.isRetryable == true)
        #expect(error?.retryAfter == .seconds(17))
        #expect(error?.upstream?.status == 429)
        #expect(error?.upstream?.codes == [])
    }

    @Test func retryAfterHTTPDateIsConvertedToAWait() {
        let error = failure(
            Fixtures.response(429, Fixtures.tooManyRequestsText, headers: [HeaderField("retry-after", "Sun, 29 Nov 2026 01:02:33 GMT")]))
        #expect(error?.code == .throttled)
        #expect(error?.retryAfter == .seconds(30))
    }

    @Test func throttledWithoutRetryAfterHasNone() {
        let error = failure(Fixtures.response(429, #"{"error":"temporarily_unavailable"}"#))
        #expect(error?.code == .throttled)
        #expect(error?.retryAfter == nil)
        #expect(error?.upstream?.error == "temporarily_unavailable")
    }

    @Test(arguments: [
        ("0", Duration.seconds(0)), ("-5", .seconds(0)), ("99999", .seconds(3600)), (" 12 ", .seconds(12)),
        ("Sun, 29 Nov 2026 01:00:00 GMT", .seconds(0)),
    ])
    func retryAfterIsClamped(header: String, expected: Duration) {
        #expect(RetryAfter.parse(header, now: Fixtures.now) == expected)
    }

    @Test(arguments: [nil, "", "soon", "12.5"] as [String?])
    func unreadableRetryAfterIsNil(header: String?) {
        #expect(RetryAfter.parse(header, now: Fixtures.now) == nil)
    }
}

@Suite struct HTTPDates {
    @Test func theRFCExampleIsRead() {
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == Date(timeIntervalSince1970: 784_111_777))
        #expect(HTTPDate.parse("Thu, 01 Jan 1970 00:00:00 GMT") == Date(timeIntervalSince1970: 0))
        #expect(HTTPDate.parse("Tue, 29 Feb 2028 23:59:59 GMT") == Date(timeIntervalSince1970: 1_835_481_599))
    }

    @Test("every second Foundation's formatter writes as IMF-fixdate reads back as the same instant")
    func agreesWithFoundation() {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        var generator = SeededRandom()
        for _ in 0..<5_000 {
            let instant = Date(timeIntervalSince1970: TimeInterval(Int.random(in: 0..<4_102_444_800, using: &generator)))  // 1970…2099
            let text = formatter.string(from: instant)
            #expect(HTTPDate.parse(text) == instant, "\(text) (\(generator))")
        }
    }

    @Test(arguments: [
        "Sun, 30 Nov 2026 01:05:03 \u{B2}\u{F2}GMT",  // what the fuzzer sent (bytes not UTF-8 there)
        "Sun, 06 Nov 1994 08:49:37 gmt", "Sun, 6 Nov 1994 08:49:37 GMT", "Sun 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",  // the obsolete forms
        "Sun, 30 Feb 2026 01:05:03 GMT", "Sun, 29 Feb 2026 01:05:03 GMT", "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Noq 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 06 Nov 1969 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT ",
    ])
    func otherTextIsNotADate(text: String) {
        #expect(HTTPDate.parse(text) == nil)
    }
}

@Suite struct EntraServerFailures {
    @Test(arguments: [500, 502, 503, 504])
    func serverErrorsAreRetryableUnavailable(status: Int) {
        for body in [Fixtures.transientServerError, Fixtures.serviceUnavailableHTML, ""] {
            let error = failure(Fixtures.response(status, body))
            #expect(error?.code == .upstreamUnavailable)
            #expect(error?.isRetryable == true)
            #expect(error?.upstream?.status == status)
            #expect(error?.message.contains("HTTP \(status)") == true)
            #expect(error?.message.contains("<html>") == false)
        }
    }

    @Test func jsonServerErrorKeepsItsIdentifiers() {
        let error = failure(Fixtures.response(500, Fixtures.transientServerError))
        #expect(
            error?.upstream
                == TokenExchangeError.Upstream(
                    status: 500, error: "temporarily_unavailable", codes: [90033], traceId: Fixtures.traceId, correlationId: Fixtures.correlationId))
    }
}

@Suite struct EntraFederationRejections {
    static let assertion: Assertion = {
        let payload =
            #"{"iss":"https://token.actions.githubusercontent.com","sub":"repo:octo/ledger:environment:Prod","aud":["api://AzureADTokenExchange","other"],"exp":1795914723,"iat":1795913523}"#
        return try! Assertion(jwt: Fixtures.jwt(payload: payload), origin: "/run/secrets/gh-oidc", loadedAt: Fixtures.now)
    }()

    @Test(
        arguments: [
            (Fixtures.noMatchingFederatedIdentity, 70021, nil),
            (Fixtures.noMatchingIssuer, 700211, "issuer differs"),
            (Fixtures.noMatchingAudience, 700212, "audience differs"),
            (Fixtures.noMatchingSubject, 700213, "subject differs"),
        ] as [(String, Int, String?)])
    func noMatchingFederatedCredentialNamesTheAssertionClaims(body: String, code: Int, part: String?) {
        let error = failure(Fixtures.response(400, body), assertion: Self.assertion)
        #expect(error?.code == .upstreamRejected)
        #expect(error?.isRetryable == false)
        let message = error?.message ?? ""
        #expect(message.hasPrefix("AADSTS\(code):"))
        #expect(message.contains("iss='https://token.actions.githubusercontent.com'"))
        #expect(message.contains("sub='repo:octo/ledger:environment:Prod'"))
        #expect(message.contains("aud='api://AzureADTokenExchange,other'"))
        #expect(message.contains(Fixtures.clientId))
        if let part { #expect(message.contains(part)) }
        #expect(!message.contains(Self.assertion.jwt))
        #expect(!message.contains(Fixtures.traceId))
        #expect(
            error?.upstream
                == TokenExchangeError.Upstream(
                    status: 400, error: "invalid_client", codes: [code], traceId: Fixtures.traceId, correlationId: Fixtures.correlationId))
    }

    @Test func staleAssertionNamesItsExpAndOrigin() {
        let error = failure(Fixtures.response(400, Fixtures.assertionOutOfTimeRange), assertion: Self.assertion)
        #expect(error?.code == .upstreamRejected)
        #expect(error?.isRetryable == true)
        let message = error?.message ?? ""
        #expect(message.hasPrefix("AADSTS700024:"))
        #expect(message.contains("exp=1795914723"))
        #expect(message.contains("2026-11-29T01:12:03Z"))
        #expect(message.contains("/run/secrets/gh-oidc"))
        #expect(message.contains("issued 600 s ago"))
        #expect(error?.upstream?.codes == [700024])
    }

    @Test func unknownApplicationNamesClientAndTenant() {
        let error = failure(Fixtures.response(400, Fixtures.applicationNotFound))
        #expect(error?.code == .upstreamRejected)
        #expect(error?.isRetryable == false)
        #expect(error?.message.contains("application \(Fixtures.clientId) was not found in tenant \(Fixtures.tenantId)") == true)
        #expect(error?.upstream?.error == "unauthorized_client")
        #expect(error?.upstream?.traceId == Fixtures.traceId)
        #expect(error?.upstream?.correlationId == Fixtures.correlationId)
    }

    @Test(arguments: [
        (70023, false, "lifetime"), (50027, false, "as a JWT"), (700027, false, "signature"),
        (90061, true, "discovery"), (90002, false, "tenant \(Fixtures.tenantId) was not found"),
        (70011, false, "scope 'https://storage.azure.com/.default'"), (50196, true, "loop"), (12345, false, "rejected the exchange"),
    ])
    func otherCodesGetSpecificHints(code: Int, retryable: Bool, hint: String) {
        let error = failure(Fixtures.response(400, Fixtures.entraError(code, description: "Something.")))
        #expect(error?.code == .upstreamRejected)
        #expect(error?.isRetryable == retryable)
        #expect(error?.message.contains(hint) == true)
        #expect(error?.message.contains("Upstream said: AADSTS\(code): Something.") == true)
    }

    @Test func unauthorizedWithoutBodyIsRejected() {
        let error = failure(Fixtures.response(401, ""))
        #expect(error?.code == .upstreamRejected)
        #expect(error?.message.hasPrefix("HTTP 401:") == true)
        #expect(error?.upstream == TokenExchangeError.Upstream(status: 401))
    }

    @Test func otherClientErrorWithoutJSONIsUnavailable() {
        let error = failure(Fixtures.response(404, "<html>Not Found</html>"))
        #expect(error?.code == .upstreamUnavailable)
    }

    @Test func longDescriptionsAreCut() {
        let error = failure(Fixtures.response(400, Fixtures.entraError(12345, description: String(repeating: "x", count: 2000))))
        #expect((error?.message.count ?? .max) < 600)
    }
}
