import Foundation
import Testing
import TokenExchange

enum AWSFixtures {
    static let roleArn = "arn:aws:iam::123456789012:role/ledger-writer"
    static let configuration = try! AWSSTSConfiguration(roleArn: roleArn)
}

@Suite struct AWSSTSConfigurationValidation {
    @Test func defaultsAreOneHourInUSEast1() throws {
        let configuration = try AWSSTSConfiguration(roleArn: AWSFixtures.roleArn)
        #expect(configuration.sessionName == "tokenbroker-{identity}")
        #expect(configuration.durationSeconds == 3600)
        #expect(configuration.region == "us-east-1")
        #expect(configuration.endpoint == "https://sts.us-east-1.amazonaws.com")
    }

    @Test(arguments: [
        ("eu-central-1", "https://sts.eu-central-1.amazonaws.com"),
        ("us-gov-west-1", "https://sts.us-gov-west-1.amazonaws.com"),
        ("cn-north-1", "https://sts.cn-north-1.amazonaws.com.cn"),
    ])
    func endpointFollowsTheRegion(region: String, endpoint: String) throws {
        #expect(try AWSSTSConfiguration(roleArn: AWSFixtures.roleArn, region: region).endpoint == endpoint)
    }

    @Test(arguments: [
        "https://sts.amazonaws.com", "http://127.0.0.1:5000", "http://localhost:5000/", "https://vpce-1.sts.us-east-1.vpce.amazonaws.com",
    ])
    func explicitEndpointIsKept(endpoint: String) throws {
        #expect(try AWSSTSConfiguration(roleArn: AWSFixtures.roleArn, endpoint: endpoint).endpoint == endpoint)
    }

    @Test(arguments: [
        "arn:aws:iam::123456789012:role/a",
        "arn:aws:iam::123456789012:role/service-role/path/Name_with+=,.@-",
        "arn:aws-cn:iam::123456789012:role/x",
        "arn:aws-us-gov:iam::123456789012:role/x",
        "arn:aws-iso-b:iam::123456789012:role/x",
    ])
    func roleARNsAreAccepted(arn: String) throws {
        #expect(try AWSSTSConfiguration(roleArn: arn).roleArn == arn)
    }

    @Test(arguments: [
        "", "ledger-writer", "arn:aws:iam::12345678901:role/x", "arn:aws:iam::1234567890123:role/x",
        "arn:aws:iam:us-east-1:123456789012:role/x", "arn:aws:iam::123456789012:user/x", "arn:aws:iam::123456789012:role/",
        "arn:aws:sts::123456789012:role/x", "arn:azure:iam::123456789012:role/x", "arn:AWS:iam::123456789012:role/x",
        "arn:aws:iam::123456789012:role/has space", "arn:aws:iam::abcdefghijkl:role/x",
    ])
    func badRoleARNsAreRefused(arn: String) {
        let error = #expect(throws: AWSSTSConfigurationError.self) { try AWSSTSConfiguration(roleArn: arn) }
        #expect(error?.message.hasPrefix("roleArn must be an IAM role ARN") == true)
    }

    @Test(arguments: [
        (AWSFields(sessionName: "tb-{x}"), "sessionName may use only the placeholder {identity}"),
        (AWSFields(sessionName: "tb {identity}"), "sessionName may contain only"),
        (AWSFields(sessionName: "tb/{identity}"), "sessionName may contain only"),
        (AWSFields(sessionName: "x"), "sessionName must be 2 to 64 characters"),
        (AWSFields(sessionName: String(repeating: "s", count: 65)), "sessionName must be 2 to 64 characters"),
        (AWSFields(durationSeconds: 899), "durationSeconds must be 900...43200"),
        (AWSFields(durationSeconds: 43201), "durationSeconds must be 900...43200"),
        (AWSFields(region: "US-EAST-1"), "region must be"),
        (AWSFields(region: "us-east"), "region must be"),
        (AWSFields(region: "us-east-1/../x"), "region must be"),
        (AWSFields(region: ""), "region must be"),
        (AWSFields(endpoint: "http://sts.us-east-1.amazonaws.com"), "endpoint must be https"),
        (AWSFields(endpoint: "sts.amazonaws.com"), "endpoint must be an absolute https:// URL"),
        (AWSFields(endpoint: "https://AKIA:secret@sts.amazonaws.com"), "endpoint must not carry credentials"),
    ])
    func badFieldsAreNamed(fields: AWSFields, prefix: String) {
        let error = #expect(throws: AWSSTSConfigurationError.self) { try fields.make() }
        #expect(error?.message.hasPrefix(prefix) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("secret") == false)
    }

    @Test(arguments: [
        ("tokenbroker-{identity}", "ledger", "tokenbroker-ledger"),
        ("{identity}", "ab", "ab"),
        ("ci@{identity}.{identity}", "x", "ci@x.x"),
        ("fixed-name", "anything", "fixed-name"),
    ])
    func sessionNameTemplateIsResolved(template: String, identity: String, expected: String) throws {
        let configuration = try AWSSTSConfiguration(roleArn: AWSFixtures.roleArn, sessionName: template)
        #expect(try configuration.sessionName(forIdentity: identity) == expected)
    }

    @Test(arguments: [
        ("{identity}", "a"), ("tokenbroker-{identity}", "has/slash"), ("tokenbroker-{identity}", "ünïcode"),
        ("tokenbroker-{identity}", String(repeating: "i", count: 53)),
    ])
    func invalidResolvedSessionNamesAreRefusedNamingTheIdentity(template: String, identity: String) throws {
        let configuration = try AWSSTSConfiguration(roleArn: AWSFixtures.roleArn, sessionName: template)
        let error = #expect(throws: AWSSTSConfigurationError.self) { try configuration.sessionName(forIdentity: identity) }
        #expect(error?.message.hasPrefix("sessionName '\(template)' gives") == true)
        #expect(error?.message.contains("for identity '\(identity)'") == true)
        #expect(throws: AWSSTSConfigurationError.self) {
            try AWSSTSExchanger(
                configuration: configuration, identity: identity, transport: RecordingTransport(response: .init(status: 500, body: [])),
                now: { Fixtures.now })
        }
    }
}

struct AWSFields: Sendable, CustomTestStringConvertible {
    var sessionName = AWSSTSConfiguration.defaultSessionName
    var durationSeconds = 3600
    var region = "us-east-1"
    var endpoint: String?

    func make() throws(AWSSTSConfigurationError) -> AWSSTSConfiguration {
        try AWSSTSConfiguration(
            roleArn: AWSFixtures.roleArn, sessionName: sessionName, durationSeconds: durationSeconds, region: region, endpoint: endpoint)
    }

    var testDescription: String { "\(sessionName) \(durationSeconds) \(region) \(endpoint ?? "-")" }
}

@Suite struct AWSSTSRequestShape {
    @Test func formFieldsAreExactlyAssumeRoleWithWebIdentity() throws {
        let assertion = Fixtures.assertion()
        let configuration = try AWSSTSConfiguration(roleArn: "arn:aws:iam::123456789012:role/ci/deployer", durationSeconds: 900)
        let fields = AWSSTSTokenRequest.formFields(configuration: configuration, sessionName: "tokenbroker-ci", assertion: assertion)
        #expect(fields.map(\.0) == ["Action", "Version", "RoleArn", "RoleSessionName", "WebIdentityToken", "DurationSeconds"])
        #expect(
            fields.map(\.1) == [
                "AssumeRoleWithWebIdentity", "2011-06-15", "arn:aws:iam::123456789012:role/ci/deployer", "tokenbroker-ci", assertion.jwt, "900",
            ])
    }

    @Test func requestIsAnUnsignedFormPOSTToTheRegionalEndpointRoot() throws {
        let assertion = Fixtures.assertion()
        let exchanger = try AWSSTSExchanger(
            configuration: try AWSSTSConfiguration(roleArn: AWSFixtures.roleArn, region: "eu-west-1"), identity: "ledger",
            transport: RecordingTransport(response: .init(status: 500, body: [])), now: { Fixtures.now })
        #expect(exchanger.sessionName == "tokenbroker-ledger")
        let request = AWSSTSTokenRequest.make(configuration: exchanger.configuration, sessionName: exchanger.sessionName, assertion: assertion)
        #expect(request.method == "POST")
        #expect(request.url == "https://sts.eu-west-1.amazonaws.com/")
        #expect(
            request.headers == [
                HeaderField("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
                HeaderField("Accept", "application/xml"),
            ])
        #expect(!request.headers.contains { ["authorization", "x-amz-date", "x-amz-security-token"].contains($0.name.lowercased()) })
        let body = String(decoding: request.body, as: UTF8.self)
        #expect(
            body.hasPrefix(
                "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fledger-writer&RoleSessionName=tokenbroker-ledger&WebIdentityToken="
            ))
        #expect(body.hasSuffix("&DurationSeconds=3600"))
        #expect(FormEncoding.decode(body).first { $0.0 == "WebIdentityToken" }?.1 == assertion.jwt)
    }

    @Test(arguments: [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000/"), ("https://sts.amazonaws.com/", "https://sts.amazonaws.com/"),
        ("http://localhost:9/sts", "http://localhost:9/sts"),
    ])
    func endpointGetsARootPathWhenItHasNone(endpoint: String, url: String) throws {
        let configuration = try AWSSTSConfiguration(roleArn: AWSFixtures.roleArn, endpoint: endpoint)
        #expect(AWSSTSTokenRequest.make(configuration: configuration, sessionName: "s1", assertion: Fixtures.assertion()).url == url)
    }
}
