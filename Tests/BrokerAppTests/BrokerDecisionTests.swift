import AssertionSources
import BrokerServer
import Foundation
import Logging
import Testing
import TokenBrokerProtocol
import TokenCache
import TokenExchange

@testable import BrokerApp

/// A `Broker` over real file sources and a real cache, without sockets.
struct BrokerFixture {
    let broker: Broker
    let cache: TokenCache<ContinuousClock>
    let audit: CapturedRecords
    let directory: String

    /// One identity per (name, token, allow rules); each token is written to a file in a temp directory.
    /// `exchanges`: an identity's exchange when not Entra.
    /// `rateLimiter`: the per-uid bucket (default: none).
    init(
        _ identities: [(name: String, token: String, allow: [AllowRule])], exchanges: [String: ExchangeConfiguration] = [:],
        rateLimiter: RateLimiter<ContinuousClock> = RateLimiter(ratePerSecond: 0, burst: 1, clock: ContinuousClock())
    ) throws {
        var template = Array("/tmp/tbbroker-XXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template)!)
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        cache = TokenCache(configuration: TokenCacheConfiguration(), clock: ContinuousClock(), now: { Date() }, logger: logger)
        audit = CapturedRecords()
        var live: [Broker.Identity] = []
        for identity in identities {
            let file = "\(directory)/\(identity.name)"
            try identity.token.write(toFile: file, atomically: true, encoding: .utf8)
            let configuration = IdentityConfiguration(
                name: identity.name, source: .file(path: file),
                exchange: try exchanges[identity.name] ?? .entra(EntraConfiguration(tenantId: "t", clientId: "c")), allow: identity.allow)
            let source = FileAssertionSource(path: file, now: { Date() }, logger: logger)
            live.append(Broker.Identity(configuration: configuration, source: source, policy: AccessPolicy(rules: identity.allow, daemonUID: 4242)))
        }
        broker = Broker(
            identities: live, cache: cache, defaultMinimumValidity: 300, logger: logger,
            rateLimiter: rateLimiter,
            audit: AuditLog(logger: audit.logger(label: "tokenbroker.audit"), clock: ContinuousClock()))
    }

    /// Every identity's source reads its file once (what the watcher does at start).
    func readSources() async {
        for identity in broker.currentIdentities { _ = try? await identity.source.currentAssertion() }
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    /// An unsigned JWT with `exp` at `expiresAt` (the broker never checks signatures).
    static func jwt(expiresAt: Date, notBefore: Date? = nil) -> String {
        var claims =
            #"{"iss":"https://issuer.test","sub":"system:serviceaccount:a:b","aud":["api://AzureADTokenExchange"],"exp":\#(Int(expiresAt.timeIntervalSince1970))"#
        if let notBefore { claims += #","nbf":\#(Int(notBefore.timeIntervalSince1970))"# }
        claims += "}"
        return Base64URL.encode(Data(#"{"alg":"RS256","typ":"JWT"}"#.utf8)) + "." + Base64URL.encode(Data(claims.utf8)) + ".c2ln"
    }
}

extension Broker {
    /// What `answer` gives at once (the response, and the check for repeating it); nil when
    /// the request needs an exchange.
    func immediate(_ request: BrokerRequest, from peer: PeerCredentials) -> (response: BrokerResponse, check: RepeatCheck?)? {
        switch answer(request, from: peer) {
        case .now(let response): (response, nil)
        case .repeatable(let response, let check): (response, check)
        case .exchange: nil
        }
    }
}

@Suite("What the broker tells callers and probes")
struct BrokerDecisionTests {
    static let caller = PeerCredentials(pid: 77, uid: 1000, gid: 1000)

    @Test("/readyz is not ready while an identity's only assertion has expired, or is not valid yet")
    func readinessNeedsAUsableAssertion() async throws {
        let fresh = BrokerFixture.jwt(expiresAt: Date().addingTimeInterval(3600))
        let expired = BrokerFixture.jwt(expiresAt: Date().addingTimeInterval(-600))
        let early = BrokerFixture.jwt(expiresAt: Date().addingTimeInterval(7200), notBefore: Date().addingTimeInterval(3600))
        let good = try BrokerFixture([(name: "good", token: fresh, allow: [])])
        defer { good.remove() }
        await good.readSources()
        #expect(good.broker.readiness().ready)

        for token in [expired, early] {
            let fixture = try BrokerFixture([(name: "good", token: fresh, allow: []), (name: "stale", token: token, allow: [])])
            defer { fixture.remove() }
            await fixture.readSources()
            let (ready, reason) = fixture.broker.readiness()
            #expect(!ready, "an assertion that cannot be exchanged now: \(reason)")
            #expect(reason.contains("stale"), "\(reason)")
        }
    }

    @Test("an unknown identity and a forbidden one get the same answer; the audit log tells them apart")
    func unknownLooksForbidden() throws {
        let token = BrokerFixture.jwt(expiresAt: Date().addingTimeInterval(3600))
        let fixture = try BrokerFixture([(name: "secret", token: token, allow: [.uid(5000)])])
        defer { fixture.remove() }
        func answer(_ identity: String, as peer: PeerCredentials = Self.caller) -> WireError? {
            fixture.broker.immediate(BrokerRequest(op: "token", scope: "s", identity: identity), from: peer)?.response.error
        }
        let denied = try #require(answer("secret"))
        let unknown = try #require(answer("nope"))
        #expect(denied.code == "forbidden" && unknown.code == "forbidden")
        #expect(unknown.message == denied.message.replacingOccurrences(of: "'secret'", with: "'nope'"), "\(unknown.message) vs \(denied.message)")
        let records = fixture.audit.all.filter { $0.message == "token denied" }
        #expect(records.count == 2)
        #expect(records.last?.metadata["error.code"] == "unknown_identity")
        #expect(records.last?.metadata["token.identity"] == "nope")
        // Root (and the daemon's own user) can read the configuration anyway: they are told.
        #expect(answer("nope", as: PeerCredentials(pid: 1, uid: 0, gid: 0))?.code == "unknown_identity")
    }
}
