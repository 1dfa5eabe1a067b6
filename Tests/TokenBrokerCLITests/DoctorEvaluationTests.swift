import Foundation
import Testing
import TokenBrokerProtocol
import TokenExchange

@testable import tokenbroker_doctor

/// Doctor's verdicts as pure functions of what was read: the edges the process tests
/// (DoctorTests in IntegrationTests) do not reach.
struct DoctorEvaluationTests {
    private static func jwt(header: [String: Any] = ["alg": "RS256", "kid": "k1"], claims: [String: Any]) throws -> String {
        func part(_ object: [String: Any]) throws -> String {
            try JSONSerialization.data(withJSONObject: object).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
        return "\(try part(header)).\(try part(claims)).c2ln"
    }

    private static func token(_ claims: [String: Any]) throws -> PeekedJWT { try PeekedJWT(compact: try jwt(claims: claims)) }

    @Test(
        "the workload variables: all or none, each shaped right",
        arguments: [
            (["AZURE_CLIENT_ID": "5e5c0a11-0000-4000-8000-00000000c1e7"], "env.AZURE_TENANT_ID", DoctorStatus.fail),
            (
                ["AZURE_CLIENT_ID": "not-a-guid", "AZURE_TENANT_ID": "contoso.onmicrosoft.com", "AZURE_FEDERATED_TOKEN_FILE": "/t"],
                "env.AZURE_CLIENT_ID", .fail
            ),
            (
                ["AZURE_CLIENT_ID": "not-a-guid", "AZURE_TENANT_ID": "contoso.onmicrosoft.com", "AZURE_FEDERATED_TOKEN_FILE": "/t"],
                "env.AZURE_TENANT_ID", .pass
            ),
            (["AZURE_FEDERATED_TOKEN_FILE": "relative/token"], "env.AZURE_FEDERATED_TOKEN_FILE", .fail),
            ([:], "env.AZURE_CLIENT_ID", .skip),
            (["AZURE_AUTHORITY_HOST": "http://login.microsoftonline.com/"], "env.AZURE_AUTHORITY_HOST", .fail),
            (["AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/tenant"], "env.AZURE_AUTHORITY_HOST", .fail),
            (["AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us"], "env.AZURE_AUTHORITY_HOST", .pass),
            (["TOKENBROKER_SOCKET": "broker.sock"], "env.TOKENBROKER_SOCKET", .fail),
            (["TOKENBROKER_SOCKET": "/" + String(repeating: "a", count: 120)], "env.TOKENBROKER_SOCKET", .fail),
        ] as [([String: String], String, DoctorStatus)])
    func environment(_ environment: [String: String], id: String, expected: DoctorStatus) {
        let finding = EnvironmentCheck.evaluate(environment).first { $0.id == id }
        #expect(finding?.status == expected, "\(String(describing: finding))")
    }

    @Test("lifetime: expired, not yet valid, over 25 h, nearly over, fine")
    func lifetime() throws {
        let now = 1_800_000_000
        #expect(TokenFileCheck.lifetime(try Self.token(["exp": now - 10, "iat": now - 3610]), now: now).status == .fail)
        #expect(TokenFileCheck.lifetime(try Self.token(["exp": now + 3600, "nbf": now + 120]), now: now).status == .fail)
        #expect(TokenFileCheck.lifetime(try Self.token(["exp": now + 26 * 3600, "iat": now]), now: now).evidence.contains("AADSTS70023"))
        #expect(TokenFileCheck.lifetime(try Self.token(["exp": now + 100, "iat": now - 3500]), now: now).status == .warn)
        #expect(TokenFileCheck.lifetime(try Self.token(["exp": now + 3000, "iat": now - 600]), now: now).status == .pass)
        #expect(TokenFileCheck.lifetime(try Self.token(["iat": now]), now: now).status == .fail)
    }

    @Test("rotation: overdue is a failure for a kubelet-written file, a warning for a plain one")
    func rotation() throws {
        let now = 1_800_000_000
        // Lifetime 1 h: due at 48 min, grace 6 min.
        let stale = try Self.token(["iat": now - 3300, "exp": now + 300])
        #expect(TokenFileCheck.rotation(stale, modified: now - 3300, kubelet: true, now: now).status == .fail)
        #expect(TokenFileCheck.rotation(stale, modified: now - 3300, kubelet: false, now: now).status == .warn)
        let fresh = try Self.token(["iat": now - 2900, "exp": now + 700])
        #expect(TokenFileCheck.rotation(fresh, modified: now - 2900, kubelet: true, now: now).status == .pass)
        // A 48 h token is rotated after 24 h, not at 80 %.
        let long = try Self.token(["iat": now - 30 * 3600, "exp": now + 20 * 3600])
        #expect(TokenFileCheck.rotation(long, modified: now - 30 * 3600, kubelet: true, now: now).status == .fail)
    }

    @Test("audience, kubernetes.io claim and malformed tokens")
    func claims() throws {
        let token = try Self.token([
            "aud": ["a", "api://AzureADTokenExchange"], "kubernetes.io": ["namespace": "ns", "pod": ["name": "p"], "serviceaccount": ["name": "sa"]],
        ])
        #expect(TokenFileCheck.audience(token, expected: "api://AzureADTokenExchange").status == .pass)
        #expect(TokenFileCheck.audience(token, expected: "api://Other").status == .fail)
        #expect(TokenFileCheck.kubernetes(token).evidence == "namespace=ns, serviceaccount=sa, pod=p")
        #expect(TokenFileCheck.kubernetes(try Self.token([:])).status == .warn)
        #expect(throws: PeekedJWT.Malformed.self) { try PeekedJWT(compact: "abc.def") }
        #expect(throws: PeekedJWT.Malformed.self) { try PeekedJWT(compact: "e30.e30.") }
        #expect(throws: PeekedJWT.Malformed.self) { try PeekedJWT(compact: "!!.e30.c2ln") }
    }

    @Test("clock skew: within the measurement's uncertainty, a warning, a failure, no Date")
    func clockSkew() {
        let server = "Sun, 06 Dec 2026 11:00:00 GMT"
        let serverTime = Date(timeIntervalSince1970: ClockSkewCheck.httpDate(server) ?? 0)
        #expect(ClockSkewCheck.httpDate(server) == 1_796_554_800)
        func verdict(localOffset: TimeInterval) -> DoctorStatus {
            let sent = serverTime.addingTimeInterval(localOffset - 0.1)
            return ClockSkewCheck.evaluate(dateHeader: server, sentAt: sent, receivedAt: sent.addingTimeInterval(0.2), source: "s").status
        }
        #expect(verdict(localOffset: 1) == .pass)
        #expect(verdict(localOffset: -90) == .warn)
        #expect(verdict(localOffset: 600) == .fail)
        #expect(verdict(localOffset: -600) == .fail)
        #expect(ClockSkewCheck.evaluate(dateHeader: nil, sentAt: serverTime, receivedAt: serverTime, source: "s").status == .warn)
        #expect(ClockSkewCheck.httpDate("Sunday, 06-Dec-26 11:00:00 GMT") == nil)
    }

    @Test("issuer: discovery naming another issuer, a JWKS without the kid")
    func issuer() {
        let (other, uri) = IssuerKeysCheck.evaluate(discovery: ["issuer": "https://a/", "jwks_uri": "https://a/keys"], issuer: "https://a", url: "u")
        #expect(other.status == .fail && uri == nil)
        let (same, jwks) = IssuerKeysCheck.evaluate(discovery: ["issuer": "https://a", "jwks_uri": "https://a/keys"], issuer: "https://a", url: "u")
        #expect(same.status == .pass && jwks == "https://a/keys")
        #expect(IssuerKeysCheck.evaluate(jwks: ["keys": [["kid": "k2"]]], keyId: "k1", url: "u").status == .fail)
        #expect(IssuerKeysCheck.evaluate(jwks: ["keys": [["kid": "k2"], ["kid": "k1"]]], keyId: "k1", url: "u").status == .pass)
    }

    @Test(
        "the broker's last errors: AADSTS codes explained, broker codes given a fix",
        arguments: [
            (700211, "issuer mismatch"), (700213, "subject mismatch"), (700212, "audience mismatch"), (700024, "expired assertion"),
            (70021, "no federated identity credential"), (700016, "application not found"), (90002, "wrong tenant"),
        ])
    func brokerErrors(code: Int, meaning: String) {
        let error = WireError(
            code: "upstream_rejected", message: "AADSTS\(code): what the broker said", retryable: false,
            upstream: UpstreamErrorDetails(status: 400, codes: [code]))
        let finding = BrokerStatusCheck.evaluate(
            IdentityStatus(name: "default", exchange: "entra", source: "file:/t", cachedScopes: [], lastError: error))
        #expect(finding.status == .fail)
        #expect(finding.evidence == "last error AADSTS\(code) (\(AADSTS.explanation(code)?.meaning ?? "")): what the broker said")
        #expect(finding.evidence.contains(meaning))
        #expect(finding.fix?.isEmpty == false)
    }

    @Test("a broker without identities fails; one that is not ready warns")
    func brokerStatus() {
        #expect(BrokerStatusCheck.evaluate(BrokerStatus(ready: false, identities: [])).first?.status == .fail)
        let identity = IdentityStatus(name: "a", exchange: "entra", source: "file:/t", cachedScopes: [])
        #expect(BrokerStatusCheck.evaluate(BrokerStatus(ready: false, identities: [identity])).first?.status == .warn)
        #expect(BrokerStatusCheck.evaluate(BrokerStatus(ready: true, identities: [identity])).map(\.status) == [.pass, .pass])
    }

    @Test("the report: ok and counts; fix absent from JSON when there is nothing to do")
    func report() throws {
        let report = DoctorReport([.pass("a", "fine"), .fail("b", "bad", fix: "do x"), .skip("c", "n/a")])
        #expect(!report.ok && report.counts == ["pass": 1, "warn": 0, "fail": 1, "skip": 1])
        let json = try JSONSerialization.jsonObject(with: Data(try report.json().utf8)) as? [String: Any]
        let checks = json?["checks"] as? [[String: Any]] ?? []
        #expect(checks.count == 3 && checks[0]["fix"] == nil && checks[1]["fix"] as? String == "do x" && checks[1]["status"] as? String == "FAIL")
        #expect(report.text().contains("FAIL  b  bad\n         fix: do x"))
    }
}
