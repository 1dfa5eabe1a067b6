import Foundation
import Testing
import TokenExchange

@Suite struct JWTClaimsDecoding {
    @Test func decodesAProjectedServiceAccountToken() throws {
        let claims = try JWTClaims(jwt: Fixtures.serviceAccountJWT(issuedAt: Fixtures.now, lifetime: 3600))
        #expect(claims.issuer == Fixtures.issuer)
        #expect(claims.subject == Fixtures.subject)
        #expect(claims.audiences == [Fixtures.audience])
        #expect(claims.issuedAt == Fixtures.now)
        #expect(claims.notBefore == Fixtures.now)
        #expect(claims.expiresAt == Fixtures.now.addingTimeInterval(3600))
    }

    @Test(arguments: [
        (#"{"aud":"api://AzureADTokenExchange"}"#, ["api://AzureADTokenExchange"]),
        (#"{"aud":["a","b"]}"#, ["a", "b"]),
        (#"{"aud":["a",7,null,"b"]}"#, ["a", "b"]),
        (#"{"aud":[]}"#, []),
        (#"{}"#, []),
        (#"{"aud":42}"#, []),
    ])
    func audienceIsAStringOrAnArray(payload: String, expected: [String]) throws {
        #expect(try JWTClaims(jwt: Fixtures.jwt(payload: payload)).audiences == expected)
    }

    /// `exp: 0` and `exp: 1` are numbers too: on Linux, JSONSerialization's NSNumber
    /// for 0 and 1 also answers `is Bool`, which must not make them "not a number".
    @Test(arguments: [
        (#"{"exp":1795914123}"#, 1_795_914_123.0),
        (#"{"exp":1795914123.5}"#, 1_795_914_123.5),
        (#"{"exp":0}"#, 0.0),
        (#"{"exp":1}"#, 1.0),
    ])
    func numericExpIsADate(payload: String, seconds: Double) throws {
        #expect(try JWTClaims(jwt: Fixtures.jwt(payload: payload)).expiresAt == Date(timeIntervalSince1970: seconds))
    }

    @Test func absentTimesAreNil() throws {
        let claims = try JWTClaims(jwt: Fixtures.jwt(payload: #"{"sub":"x"}"#))
        #expect(claims.expiresAt == nil && claims.notBefore == nil && claims.issuedAt == nil && claims.issuer == nil)
        #expect(claims.subject == "x")
    }

    @Test(arguments: [
        ("a.b", "expected 3 dot-separated parts, found 2"),
        ("a.b.c.d", "expected 3 dot-separated parts, found 4"),
        ("", "expected 3 dot-separated parts, found 1"),
        ("eyJhbGciOiJub25lIn0..sig", "the header or payload part is empty"),
        (".eyJzdWIiOiJ4In0.sig", "the header or payload part is empty"),
        ("eyJhbGciOiJub25lIn0.!!!not*base64.sig", "the payload is not base64url"),
        ("eyJhbGciOiJub25lIn0.a.sig", "the payload is not base64url"),
    ])
    func rejectsMalformedCompactSerialization(jwt: String, reason: String) {
        #expect(throws: JWTDecodingError(reason)) { try JWTClaims(jwt: jwt) }
    }

    @Test(arguments: [
        ("not json at all", "the payload is not JSON"),
        (#"{"sub":"x""#, "the payload is not JSON"),
        (#"["sub","x"]"#, "the payload is not a JSON object"),
        (#""just a string""#, "the payload is not JSON"),  // a top-level fragment is refused by the parser
        ("42", "the payload is not JSON"),
        (#"{"exp":"1795914123"}"#, "claim 'exp' is not a number"),
        (#"{"exp":true}"#, "claim 'exp' is not a number"),
        (#"{"exp":false}"#, "claim 'exp' is not a number"),
        (#"{"nbf":"soon"}"#, "claim 'nbf' is not a number"),
        (#"{"iat":null}"#, "claim 'iat' is not a number"),
        (#"{"exp":-1}"#, "claim 'exp' is out of range"),
        (#"{"exp":1e300}"#, "claim 'exp' is out of range"),
    ])
    func rejectsPayloadsThatAreNotClaims(payload: String, reason: String) {
        #expect(throws: JWTDecodingError(reason)) { try JWTClaims(jwt: Fixtures.jwt(payload: payload)) }
    }

    @Test func errorsNeverQuoteTheToken() {
        let jwt = Fixtures.jwt(payload: #"{"exp":"secret-ish"}"#)
        let error = #expect(throws: JWTDecodingError.self) { try JWTClaims(jwt: jwt) }
        #expect(error.map { !"\($0)".contains(jwt) && !"\($0)".contains("secret-ish") } == true)
    }
}

@Suite struct Base64URLCoding {
    @Test(arguments: [
        ([UInt8](), ""),
        ([0xFB, 0xFF], "-_8"),
        ([0xFB, 0xEF, 0xBE], "----"),
        ([0xFF, 0xFF, 0xFF], "____"),
        (Array("{\"alg\":\"RS256\"}".utf8), "eyJhbGciOiJSUzI1NiJ9"),
        ([0x00], "AA"),
        ([0x00, 0x01], "AAE"),
    ])
    func encodesWithoutPaddingAndDecodesBack(bytes: [UInt8], text: String) {
        #expect(Base64URL.encode(bytes) == text)
        #expect(Base64URL.decode(text).map(Array.init) == bytes)
    }

    @Test(arguments: ["AA==", "AAE=", "-_8="])
    func acceptsPadding(text: String) {
        #expect(Base64URL.decode(text) != nil)
        #expect(Base64URL.decode(text) == Base64URL.decode(text.replacingOccurrences(of: "=", with: "")))
    }

    @Test(arguments: ["A", "AAAAA", "A=A=", "=AAA", "a b!", "é"])
    func rejectsWhatIsNotBase64URL(text: String) {
        #expect(Base64URL.decode(text) == nil)
    }

    @Test func roundTripsEveryByte() {
        let bytes = (0...255).map(UInt8.init)
        for length in 0...bytes.count {
            let slice = Array(bytes.prefix(length))
            let text = Base64URL.encode(slice)
            #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
            #expect(Base64URL.decode(text).map(Array.init) == slice)
        }
    }
}

@Suite struct AssertionValidity {
    static let now = Fixtures.now

    static func assertion(_ payload: String) throws -> Assertion {
        try Assertion(jwt: Fixtures.jwt(payload: payload), origin: Fixtures.origin, loadedAt: now)
    }

    static func epoch(_ offset: TimeInterval) -> Int { Int(now.addingTimeInterval(offset).timeIntervalSince1970) }

    @Test(arguments: [3600.0, 6.0, 5.0])
    func validWhenMoreThanMinimumRemains(offset: TimeInterval) throws {
        try Self.assertion(#"{"exp":\#(Self.epoch(offset))}"#).checkValidity(at: Self.now)
    }

    @Test func expiredAssertionIsRefusedNamingItsOriginAndExp() throws {
        let exp = Self.epoch(-120)
        let error = #expect(throws: TokenExchangeError.self) {
            try Self.assertion(#"{"exp":\#(exp)}"#).checkValidity(at: Self.now)
        }
        #expect(error?.code == .assertionExpired)
        #expect(error?.isRetryable == true)
        #expect(error?.message.contains(Fixtures.origin) == true)
        #expect(error?.message.contains("exp=\(exp)") == true)
        #expect(error?.message.contains("120 s ago") == true)
    }

    @Test(arguments: [4.0, 1.0, 0.0])
    func expiringWithinMinimumRemainingCountsAsExpired(offset: TimeInterval) throws {
        let error = #expect(throws: TokenExchangeError.self) {
            try Self.assertion(#"{"exp":\#(Self.epoch(offset))}"#).checkValidity(at: Self.now)
        }
        #expect(error?.code == .assertionExpired)
    }

    @Test func minimumRemainingIsAParameter() throws {
        let assertion = try Self.assertion(#"{"exp":\#(Self.epoch(30))}"#)
        try assertion.checkValidity(at: Self.now, minimumRemaining: 29)
        #expect(throws: TokenExchangeError.self) { try assertion.checkValidity(at: Self.now, minimumRemaining: 31) }
    }

    @Test func notBeforeInTheFutureBeyondSkewIsRefused() throws {
        let nbf = Self.epoch(120)
        let error = #expect(throws: TokenExchangeError.self) {
            try Self.assertion(#"{"exp":\#(Self.epoch(3600)),"nbf":\#(nbf)}"#).checkValidity(at: Self.now)
        }
        #expect(error?.code == .assertionExpired)
        #expect(error?.message.contains("nbf=\(nbf)") == true)
        #expect(error?.message.contains(Fixtures.origin) == true)
    }

    @Test(arguments: [30.0, 60.0, -600.0])
    func notBeforeWithinSkewIsAccepted(offset: TimeInterval) throws {
        try Self.assertion(#"{"exp":\#(Self.epoch(3600)),"nbf":\#(Self.epoch(offset))}"#).checkValidity(at: Self.now)
    }

    @Test func noTimesMeansNothingToCheck() throws {
        try Self.assertion(#"{"sub":"x"}"#).checkValidity(at: Self.now)
    }

    @Test func initRejectsANonJWT() {
        #expect(throws: JWTDecodingError.self) { try Assertion(jwt: "not-a-jwt", origin: "x", loadedAt: Self.now) }
    }
}

@Suite struct SecretsStayOutOfDescriptions {
    @Test func assertionDescriptionShowsClaimsNotTheToken() {
        let assertion = Fixtures.assertion()
        let text = "\(assertion)"
        #expect(!text.contains(assertion.jwt))
        for part in assertion.jwt.split(separator: ".") { #expect(!text.contains(part)) }
        #expect(text.contains(Fixtures.subject))
        #expect(text.contains(Fixtures.origin))
        #expect(String(reflecting: assertion).contains(Fixtures.subject))
    }

    @Test func accessTokenDescriptionShowsTimesNotTheToken() {
        let token = AccessToken(value: Fixtures.accessToken, issuedAt: Fixtures.now, expiresAt: Fixtures.now.addingTimeInterval(3599))
        let text = "\(token)"
        #expect(!text.contains(Fixtures.accessToken))
        for part in Fixtures.accessToken.split(separator: ".") { #expect(!text.contains(part)) }
        #expect(text.contains("\(Int(Fixtures.now.timeIntervalSince1970) + 3599)"))
        #expect(token.lifetime == 3599)
    }

    @Test func parseFailuresNeverEchoTheAssertionOrBody() throws {
        let assertion = Fixtures.assertion()
        for body in [Fixtures.noMatchingFederatedIdentity, Fixtures.assertionOutOfTimeRange, Fixtures.serviceUnavailableHTML] {
            for status in [400, 401, 500] {
                let error = #expect(throws: TokenExchangeError.self) {
                    try EntraTokenResponse.parse(
                        Fixtures.response(status, body), configuration: Fixtures.configuration,
                        scope: Fixtures.scope, assertion: assertion, now: Fixtures.now)
                }
                #expect(error.map { !$0.message.contains(assertion.jwt) && !$0.message.contains("Trace ID") } == true)
            }
        }
    }
}
