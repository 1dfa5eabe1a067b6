import Foundation
import TestRandom
import Testing

@testable import BrokerServer

/// The one-pass target parser is a shortcut: wherever it answers, `URLComponents`
/// must answer the same.
@Suite struct HTTPRequestTargetTests {
    @Test func readsTheUsualTargetsItself() throws {
        let token = try #require(HTTPRequestTarget.originForm("/v1/token?scope=https%3A%2F%2Fvault.azure.net%2F.default&identity=web"))
        #expect(token.path == "/v1/token")
        #expect(token.query.map(\.name) == ["scope", "identity"])
        #expect(token.first("scope") == "https://vault.azure.net/.default")
        #expect(token.first("identity") == "web")
        let imds = try #require(
            HTTPRequestTarget.originForm(
                "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/&client_id=5e5c"))
        #expect(imds.first("resource") == "https://management.azure.com/")
        #expect(HTTPRequestTarget.originForm("/healthz")?.query.isEmpty == true)
        #expect(HTTPRequestTarget.originForm("/x?flag")?.first("flag") == "")
        #expect(HTTPRequestTarget.originForm("/x?a=1+2")?.first("a") == "1+2")
    }

    @Test(arguments: [
        "http://host/v1/token?scope=x", "//host/x", "/x?", "/x?a=1&&b=2", "/x?a=1&", "/x#frag", "/x?a=%zz", "/x?a=%4", "/x y", "/x?a=\"", "/x?a=%ff",
        "*",
    ])
    func leavesTheRestToURLComponents(_ uri: String) {
        #expect(HTTPRequestTarget.originForm(uri) == nil)
    }

    @Test("a % not followed by two hexadecimal digits is a malformed escape, wherever it is")
    func malformedEscapes() {
        for uri in ["/x?a=%zz", "/x?a=%4", "/x?a=%", "/x?a=1&b=%g1", "http://h/x?a=%zz"] { #expect(HTTPRequestTarget(uri).malformedEscape, "\(uri)") }
        for uri in ["/x?a=%41", "/x?a=%2f%3A", "/x?a=1", "http://h/x?a=%41&b=x"] { #expect(!HTTPRequestTarget(uri).malformedEscape, "\(uri)") }
        #expect(HTTPRequestTarget("/x?scope=a&scope=b&id=1").repeated(among: ["id", "scope"]) == "scope")
        #expect(HTTPRequestTarget("/x?scope=a&id=1").repeated(among: ["id", "scope"]) == nil)
    }

    @Test func agreesWithURLComponentsOnGeneratedTargets() {
        let pieces = [
            "/", "v1", "token", "?", "&", "=", "scope", "a", "%41", "%2F", "%3a", "%", "%g1", "+", "~", ".", "-", "_", ":", "@", "!", "$", "'", "(",
            ")", "*", ",", ";", "%C3%A9", "%C3", " ", "#", "é",
        ]
        var generator = SeededRandom()
        var answered = 0
        for _ in 0..<20_000 {
            let uri = "/" + (0..<Int.random(in: 0...10, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined()
            guard let fast = HTTPRequestTarget.originForm(uri) else { continue }
            answered += 1
            let components = URLComponents(string: uri)
            #expect(fast.path == components?.path ?? uri, "\(uri) (\(generator))")
            let reference = (components?.queryItems ?? []).map { "\($0.name)=\($0.value ?? "")" }
            #expect(fast.query.map { "\($0.name)=\($0.value)" } == reference, "\(uri) (\(generator))")
        }
        #expect(answered > 1000, "\(generator)")
    }
}
