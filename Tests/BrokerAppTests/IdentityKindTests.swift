import BrokerServer
import Foundation
import Logging
import Testing
import TokenBrokerProtocol
import TokenExchange

@testable import BrokerApp

/// Requests that name no identity choose among identities of the kind they ask for
/// (`IdentityChoice`), and the messages say what is known of the caller.
@Suite("Access-token and AWS identities: which one a request gets")
struct IdentityKindTests {
    static let caller = PeerCredentials(pid: 77, uid: 1000, gid: 1000)
    /// What a loopback TCP listener knows: the uid from the socket table, no pid or gid.
    static let tcpCaller = PeerCredentials(pid: 0, uid: 1000, gid: UInt32.max)
    static let role = "arn:aws:iam::123456789012:role/app"
    static let token = BrokerFixture.jwt(expiresAt: Date().addingTimeInterval(3600))

    static func fixture(_ names: [(String, aws: Bool)], allow: [AllowRule] = [.uid(1000)]) throws -> BrokerFixture {
        var exchanges: [String: ExchangeConfiguration] = [:]
        for (name, aws) in names where aws { exchanges[name] = .awsSts(try AWSSTSConfiguration(roleArn: role)) }
        return try BrokerFixture(names.map { (name: $0.0, token: token, allow: allow) }, exchanges: exchanges)
    }

    /// The refusal of a token request, or nil when it resolved (it then waits for an exchange).
    static func refusal(_ fixture: BrokerFixture, scope: String? = nil, identity: String? = nil, as peer: PeerCredentials = caller) -> WireError? {
        fixture.broker.immediate(BrokerRequest(op: "token", scope: scope, identity: identity), from: peer)?.response.error
    }

    @Test("with one Entra and one AWS identity, a scope picks the Entra one and no scope the AWS one")
    func eachKindPicksItsIdentity() throws {
        let fixture = try Self.fixture([("storage", aws: false), ("aws", aws: true)])
        defer { fixture.remove() }
        #expect(Self.refusal(fixture, scope: "https://storage.azure.com/.default") == nil)
        #expect(Self.refusal(fixture) == nil)
    }

    @Test("several of the asked kind is still ambiguous, and the message names only those")
    func severalOfOneKind() throws {
        let fixture = try Self.fixture([("a", aws: false), ("b", aws: false), ("aws", aws: true)])
        defer { fixture.remove() }
        let error = try #require(Self.refusal(fixture, scope: "s"))
        #expect(error.code == "identity_required")
        #expect(error.message == "several identities that give access tokens are available to you (a, b); name one with 'identity'")
        #expect(Self.refusal(fixture) == nil, "one AWS identity: no scope is unambiguous")
    }

    @Test("a caller with identities of the other kind only is told which kind it has")
    func onlyTheOtherKind() throws {
        let awsOnly = try Self.fixture([("aws", aws: true)])
        defer { awsOnly.remove() }
        let noTokens = try #require(Self.refusal(awsOnly, scope: "https://storage.azure.com/.default", as: Self.tcpCaller))
        #expect(noTokens.code == "forbidden")
        #expect(noTokens.message == "no identity that gives access tokens is available to caller uid 1000; yours give AWS credentials (aws)")

        let entraOnly = try Self.fixture([("storage", aws: false)])
        defer { entraOnly.remove() }
        let noScope = try #require(Self.refusal(entraOnly))
        #expect(noScope.code == "bad_request")
        #expect(noScope.message == "op 'token' needs 'scope' (or IMDS-style 'resource')")
    }

    @Test("naming an identity of the other kind says which kind it gives")
    func namedWrongKind() throws {
        let fixture = try Self.fixture([("storage", aws: false), ("aws", aws: true)])
        defer { fixture.remove() }
        #expect(
            Self.refusal(fixture, scope: "s", identity: "aws")?.message
                == "identity 'aws' gives AWS credentials for \(Self.role), not access tokens; leave out 'scope'")
        #expect(Self.refusal(fixture, scope: Self.role, identity: "aws") == nil, "the role ARN is the AWS identity's own scope")
        #expect(
            Self.refusal(fixture, identity: "storage")?.message
                == "identity 'storage' gives access tokens, not AWS credentials; op 'token' needs 'scope' (or IMDS-style 'resource')")
    }

    @Test("a TCP caller is named by its uid alone; its audit record has no pid or gid")
    func tcpCallerWithoutPid() throws {
        let fixture = try Self.fixture([("storage", aws: false)], allow: [.uid(5000)])
        defer { fixture.remove() }
        let error = try #require(Self.refusal(fixture, scope: "s", identity: "storage", as: Self.tcpCaller))
        #expect(error.message == "caller uid 1000 may not use identity 'storage'; no identity is available to you")
        #expect(Self.refusal(fixture, scope: "s", as: Self.tcpCaller)?.message == "caller uid 1000 may not use any identity")
        #expect(Self.refusal(fixture, scope: "s")?.message == "caller uid 1000 (pid 77) may not use any identity", "a Unix caller keeps its pid")
        let records = fixture.audit.all.filter { $0.message == "token denied" }
        #expect(records.count == 3)
        #expect(records[0].metadata["peer.uid"] == "1000" && records[0].metadata["peer.pid"] == nil && records[0].metadata["peer.gid"] == nil)
        #expect(records[2].metadata["peer.pid"] == "77" && records[2].metadata["peer.gid"] == "1000")
    }

    @Test(
        "a resource that is already a .default scope stays one scope",
        arguments: [
            ("https://storage.azure.com", "https://storage.azure.com/.default"),
            ("https://storage.azure.com/", "https://storage.azure.com/.default"),
            ("https://storage.azure.com/.default", "https://storage.azure.com/.default"),
            ("https://storage.azure.com/.default/", "https://storage.azure.com/.default"),
            ("api://app", "api://app/.default"),
        ])
    func resourceToScope(_ resource: String, _ scope: String) {
        #expect(Scope(resource: resource).value == scope)
    }

    @Test("App Service 2017-09-01 expires_on is MM/DD/YYYY HH:MM:SS +00:00 in UTC")
    func legacyExpiresOn() {
        #expect(ManagedIdentityVersions.legacyExpiresOn(0) == "01/01/1970 00:00:00 +00:00")
        #expect(ManagedIdentityVersions.legacyExpiresOn(1_561_000_678) == "06/20/2019 03:17:58 +00:00")
        #expect(ManagedIdentityVersions.appService("2017-09-01") == .legacy2017 && ManagedIdentityVersions.appService("2019-08-01") == .current)
        #expect(ManagedIdentityVersions.appService("2018-02-01") == nil)
        #expect(ManagedIdentityVersions.imdsAccepts("2021-02-01") && !ManagedIdentityVersions.imdsAccepts("2017-12-01"))
    }
}
