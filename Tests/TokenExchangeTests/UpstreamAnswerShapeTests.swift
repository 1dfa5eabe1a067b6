import Foundation
import Testing
import TokenExchange

/// The three parsers read a failure in one shape (status and the service's code → throttled,
/// unavailable or rejected) and read JSON bodies through one `Decodable` type: the edges of both.
@Suite struct UpstreamAnswerShape {
    private typealias Outcome = TokenExchangeError.Code?

    private static func entra(_ response: UpstreamResponse) -> Outcome {
        do {
            _ = try EntraTokenResponse.parse(
                response, configuration: Fixtures.configuration, scope: Fixtures.scope, assertion: Fixtures.assertion(), now: Fixtures.now)
            return nil
        } catch { return error.code }
    }

    private static func rfc8693(_ response: UpstreamResponse) -> Outcome {
        do {
            _ = try RFC8693TokenResponse.parse(
                response, configuration: RFC8693Fixtures.configuration, scope: RFC8693Fixtures.scope, assertion: Fixtures.assertion(),
                now: Fixtures.now)
            return nil
        } catch { return error.code }
    }

    private static func aws(_ response: UpstreamResponse) -> Outcome {
        do {
            _ = try AWSSTSTokenResponse.parse(
                response, configuration: AWSFixtures.configuration, assertion: Fixtures.assertion(), now: AWSBodies.motoReceivedAt)
            return nil
        } catch { return error.code }
    }

    // What each service refuses with decides whether an answer without its error body is a
    // refusal or a failure of something in between: Entra 400/401, RFC 8693 400/401/403, AWS 400/403.
    @Test(
        arguments: [
            (429, "", TokenExchangeError.Code.throttled, TokenExchangeError.Code.throttled, TokenExchangeError.Code.throttled),
            (503, "", .upstreamUnavailable, .upstreamUnavailable, .upstreamUnavailable),
            (404, "<html>not found</html>", .upstreamUnavailable, .upstreamUnavailable, .upstreamUnavailable),
            (400, "", .upstreamRejected, .upstreamRejected, .upstreamRejected),
            (401, "", .upstreamRejected, .upstreamRejected, .upstreamUnavailable),
            (403, "", .upstreamUnavailable, .upstreamRejected, .upstreamRejected),
            (400, #"{"error":"invalid_grant"}"#, .upstreamRejected, .upstreamRejected, .upstreamRejected),
            (418, #"{"error":"invalid_grant"}"#, .upstreamRejected, .upstreamRejected, .upstreamUnavailable),
        ] as [(Int, String, TokenExchangeError.Code, TokenExchangeError.Code, TokenExchangeError.Code)])
    func statusAndBodyDecideTheClass(
        status: Int, body: String, entra: TokenExchangeError.Code, rfc8693: TokenExchangeError.Code, aws: TokenExchangeError.Code
    ) {
        let response = Fixtures.response(status, body)
        #expect(Self.entra(response) == entra)
        #expect(Self.rfc8693(response) == rfc8693)
        #expect(Self.aws(response) == aws)
    }

    @Test func awsCodesClassAnAnswerWhateverItsStatus() {
        #expect(Self.aws(Fixtures.response(400, AWSBodies.awsError("Throttling", "Rate exceeded"))) == .throttled)
        #expect(Self.aws(Fixtures.response(400, AWSBodies.awsError("IDPCommunicationError", "timeout"))) == .upstreamUnavailable)
        #expect(Self.aws(Fixtures.response(400, AWSBodies.awsError("InvalidIdentityToken", "no"))) == .upstreamRejected)
    }

    // The lenient number: a JSON number or a string holding one; nothing else is a lifetime.
    @Test(arguments: [
        (#""3599""#, true), ("3599", true), ("3599.0", true), (#""3599.5""#, true),
        (#""soon""#, false), (#""inf""#, false), (#""1e400""#, false), ("true", false), (#"["3599"]"#, false), ("null", false),
    ])
    func expiresInIsANumberOrANumericString(value: String, isNumber: Bool) throws {
        let response = Fixtures.response(200, #"{"access_token":"t","expires_in":\#(value)}"#)
        #expect(Self.entra(response) == (isNumber ? nil : .upstreamUnavailable))
        if isNumber {
            let token = try EntraTokenResponse.parse(
                response, configuration: Fixtures.configuration, scope: Fixtures.scope, assertion: Fixtures.assertion(), now: Fixtures.now)
            #expect(token.lifetime.rounded(.down) == 3599)
        }
    }

    @Test func errorCodesKeepTheNumbersOfTheList() throws {
        let body = #"{"error":"invalid_client","error_codes":[1e20,-5,"7000215",700212.9,true,null,{},[1]]}"#
        let error = try #require(Self.entraError(Fixtures.response(400, body)))
        #expect(error.upstream?.codes == [-5, 700212])
        let notAList = try #require(Self.entraError(Fixtures.response(400, #"{"error":"invalid_client","error_codes":700212}"#)))
        #expect(notAList.upstream?.codes == [])
    }

    // JSONDecoder reads a value only when asked; a body that is not JSON anywhere is refused
    // whole, as JSONSerialization refused it, rather than yielding a token.
    @Test(arguments: [#","x":1e400"#, #","x":"\ud800""#, #","x":[01]"#, #","x":-"#])
    func aBodyThatIsNotJSONAnywhereIsNotAToken(extra: String) throws {
        let error = try #require(Self.entraError(Fixtures.response(200, #"{"access_token":"t","expires_in":60\#(extra)}"#)))
        #expect(error.message == "the token service answered 200 with a body that is not a JSON object")
    }

    @Test func everyExplainedAADSTSCodeHasAMeaningAndAFix() {
        for code in [70021, 700211, 700212, 700213, 700024, 70023, 700016, 90002, 700027, 90061, 50027, 1002012, 70011, 50196] {
            let explanation = AADSTS.explanation(code)
            #expect(explanation?.meaning.isEmpty == false, "AADSTS\(code)")
            #expect(explanation?.fix.isEmpty == false, "AADSTS\(code)")
        }
        #expect(AADSTS.explanation(12345) == nil)
    }

    private static func entraError(_ response: UpstreamResponse) -> TokenExchangeError? {
        do {
            _ = try EntraTokenResponse.parse(
                response, configuration: Fixtures.configuration, scope: Fixtures.scope, assertion: Fixtures.assertion(), now: Fixtures.now)
            return nil
        } catch { return error }
    }
}
