import Foundation
import TokenExchange

/// AWS STS answers for the `AssumeRoleWithWebIdentity` parser.
///
/// The `moto…` bodies are byte-for-byte what `moto_server` (PyPI moto 5.2.5, `moto[server]`, on
/// loopback) answered on 2026-11-29: the success to this exact request,
///
///     curl -X POST http://127.0.0.1:PORT/ -H 'Content-Type: application/x-www-form-urlencoded; charset=utf-8' \
///       --data-urlencode Action=AssumeRoleWithWebIdentity --data-urlencode Version=2011-06-15 \
///       --data-urlencode RoleArn=arn:aws:iam::123456789012:role/ledger-writer \
///       --data-urlencode RoleSessionName=tokenbroker-ledger --data-urlencode WebIdentityToken=<motoWebIdentityToken> \
///       --data-urlencode DurationSeconds=3600
///
/// and the error to an `AssumeRole` with a 65-character session name (moto never refuses an
/// AssumeRoleWithWebIdentity: it does not validate the token; its STS errors all share this
/// `ErrorResponse` shape, which is AWS's). The test target declares no resources, so they
/// live here as literals. The `aws…` bodies follow the shapes in the STS API reference.
enum AWSBodies {
    /// When moto sent `motoSuccess` (its `Date` header): `Expiration` is one hour later.
    static let motoReceivedAt = Date(timeIntervalSince1970: 1_795_925_981)  // 2026-11-29T04:19:41Z

    static let motoWebIdentityToken =
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJhdWQiOlsic3RzLmFtYXpvbmF3cy5jb20iXSwiZXhwIjoxNzk1OTE3NzIzLCJpYXQiOjE3OTU5MTQxMjMsImlzcyI6Imh0dHBzOi8vb2lkYy5leGFtcGxlLmNvbS9jbHVzdGVyLTEiLCJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cGF5bWVudHM6bGVkZ2VyLXdyaXRlciJ9.c2lnbmF0dXJl"

    static let motoSuccess = #"""
        <AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIARZPUZDIKBVEYK5UV</AccessKeyId><SecretAccessKey>rdf4CscACn5rDniLws9MBYKHmlOZp1wiTupuzirX</SecretAccessKey><SessionToken>FQoGZXIvYXdzEBYaD9wf6jwRnQH3LT//hX+toYrVENKUZjUO6NEncHma27+aPAEpsqcHIAhGVerXKAVPKt/3SgN4XmFoKdzsuPGyTjwE1pW+k4YOnfvDmtxdtlJdpOxkeI5BRrNVgO66IrV0vW0qoHmNzz3thpaPwFBWDIvdHsSxrahUQs2UjOhfz086Qm5GKrRpucnuo6sbZ8a89NYY0cjHAAA6CXL5305u1LStGr13ZggdElUmTQtwPyw5uxN9zF+VwPh4bYnTUYsxloCyxx8cTwqsbCOjGA86DmjWIhTmlHcGEeTuHhUyG0mJ/KzzpeH+l9Sbz7ExaQRK0+ysiouPiKoNjinD5Vw=</SessionToken><Expiration>2026-11-29T05:19:41.034240Z</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>ARO123EXAMPLE123:tokenbroker-ledger</AssumedRoleId><Arn>arn:aws:sts::123456789012:assumed-role/ledger-writer/tokenbroker-ledger</Arn></AssumedRoleUser><PackedPolicySize>6</PackedPolicySize></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>gF0B8rehiIZXU8THHXHCnY5S2X1wObQTAhAmJG8TwQ3Bzs3uka7T</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>
        """#

    static let motoValidationError = #"""
        <ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>1 validation error detected: Value 'sssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss' at 'roleSessionName' failed to satisfy constraint: Member must have length less than or  equal to 64</Message></Error><RequestId>uAQJcJcTyH4E0reGNgUu62xAEcC7pq2Ruyycb288l1R7mOmADCBR</RequestId></ErrorResponse>
        """#

    /// The STS API reference's example, pretty-printed as AWS sends it, with an XML declaration.
    static let awsDocumentedSuccess = """
        <?xml version="1.0" encoding="UTF-8"?>
        <AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
          <AssumeRoleWithWebIdentityResult>
            <SubjectFromWebIdentityToken>system:serviceaccount:payments:ledger-writer</SubjectFromWebIdentityToken>
            <Audience>sts.amazonaws.com</Audience>
            <AssumedRoleUser>
              <Arn>arn:aws:sts::210987654321:assumed-role/ledger-writer/tokenbroker-ledger</Arn>
              <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:tokenbroker-ledger</AssumedRoleId>
            </AssumedRoleUser>
            <Credentials>
              <SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE&amp;more</SessionToken>
              <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
              <Expiration>2026-11-29T05:19:41Z</Expiration>
              <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>
            </Credentials>
            <SourceIdentity>SourceIdentityValue</SourceIdentity>
            <Provider>oidc.example.com/cluster-1</Provider>
          </AssumeRoleWithWebIdentityResult>
          <ResponseMetadata>
            <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>
          </ResponseMetadata>
        </AssumeRoleWithWebIdentityResponse>
        """

    /// An STS error document as AWS sends it for `code`.
    static func awsError(_ code: String, _ message: String, type: String = "Sender") -> String {
        """
        <ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
          <Error>
            <Type>\(type)</Type>
            <Code>\(code)</Code>
            <Message>\(message)</Message>
          </Error>
          <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
        </ErrorResponse>
        """
    }
}
