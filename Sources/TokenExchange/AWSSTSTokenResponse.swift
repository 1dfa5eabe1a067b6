public import FoundationEssentials
import Glibc

extension AWSCredentials {
    /// The `tokenType` of an `AccessToken` that carries AWS credentials: `AWS4-HMAC-SHA256`.
    ///
    /// OAuth's `token_type` names the HTTP authorization scheme a credential is used with
    /// (`Bearer`); AWS credentials are used with the Signature Version 4 scheme, whose
    /// `Authorization` header starts with exactly this name. A caller seeing it knows the
    /// `token` (the session token) is not a bearer token and must sign with the key pair.
    public static let tokenType = "AWS4-HMAC-SHA256"
}

/// Parses AWS STS `AssumeRoleWithWebIdentity` answers (XML) into an `AccessToken` carrying
/// `AWSCredentials`, or an actionable `TokenExchangeError`.
public enum AWSSTSTokenResponse {
    /// Turns `response` into a token whose `value` is the session token and whose
    /// `awsCredentials` hold the key pair, or throws an error explaining the failure in
    /// terms of the role and of `assertion`'s claims (never its text).
    ///
    /// - Parameter now: our wall clock when the response arrived.
    public static func parse(
        _ response: UpstreamResponse,
        configuration: AWSSTSConfiguration,
        assertion: Assertion,
        now: Date
    ) throws(TokenExchangeError) -> AccessToken {
        let document = STSXMLElement.parse(response.body)
        guard response.status == 200 else {
            throw error(for: response, document: document, configuration: configuration, assertion: assertion, now: now)
        }
        let requestId = UntrustedText.identifier(
            document?.text(at: ["ResponseMetadata", "RequestId"]) ?? response.header("x-amzn-RequestId"), redacting: [assertion.jwt])
        func malformed(_ what: String) -> TokenExchangeError {
            TokenExchangeError(
                code: .upstreamUnavailable, message: "AWS STS answered 200 \(what)", isRetryable: true,
                upstream: .init(status: 200, traceId: requestId))
        }
        guard let document else { throw malformed("with a body that is not XML") }
        guard document.name == "AssumeRoleWithWebIdentityResponse", let result = document.child("AssumeRoleWithWebIdentityResult") else {
            throw malformed(
                "with a '\(UntrustedText.identifier(document.name, redacting: [assertion.jwt], limit: 64) ?? "?")' document instead of an AssumeRoleWithWebIdentityResponse"
            )
        }
        var missing: [String] = []
        let accessKeyId = result.text(at: ["Credentials", "AccessKeyId"])
        let secretAccessKey = result.text(at: ["Credentials", "SecretAccessKey"])
        let sessionToken = result.text(at: ["Credentials", "SessionToken"])
        let expirationText = result.text(at: ["Credentials", "Expiration"])
        if accessKeyId == nil { missing.append("AccessKeyId") }
        if secretAccessKey == nil { missing.append("SecretAccessKey") }
        if sessionToken == nil { missing.append("SessionToken") }
        if expirationText == nil { missing.append("Expiration") }
        guard let accessKeyId, let secretAccessKey, let sessionToken, let expirationText, missing.isEmpty else {
            throw malformed("without Credentials/\(missing.joined(separator: ", "))")
        }
        guard let expiration = RFC3339.date(expirationText) else {
            throw malformed("with an Expiration that is not an ISO 8601 time")
        }
        try AccessToken.checkStatedExpiry(
            expiration, now: now,
            past: { "with credentials that expired at \(Timestamp.iso8601(expiration)), \($0) s before they arrived; check the clock of this host" },
            tooFar: "with an Expiration more than a year away; refusing credentials with an implausible lifetime", malformed: malformed)
        let credentials = AWSCredentials(
            accessKeyId: accessKeyId, secretAccessKey: secretAccessKey, sessionToken: sessionToken, expiration: expiration,
            accountId: result.text(at: ["AssumedRoleUser", "Arn"]).flatMap(accountId(fromARN:)))
        return AccessToken(
            value: sessionToken, tokenType: AWSCredentials.tokenType, issuedAt: now, expiresAt: expiration,
            awsCredentials: credentials)
    }

    /// The 12-digit account of an ARN (its fifth field), nil when there is none.
    static func accountId(fromARN arn: String) -> String? {
        let fields = arn.split(separator: ":", maxSplits: 5, omittingEmptySubsequences: false)
        guard fields.count == 6, fields[0] == "arn", fields[4].count == 12, fields[4].allSatisfy({ $0.isASCII && $0.isNumber }) else {
            return nil
        }
        return String(fields[4])
    }

    /// The typed error for a non-200 answer (`ErrorResponse/Error/{Type,Code,Message}`):
    /// throttled (429 or a throttling code), unavailable (5xx, an unavailability code, or no
    /// STS error with a status other than 400/403), else rejected with the code explained.
    static func error(
        for response: UpstreamResponse,
        document: STSXMLElement?,
        configuration: AWSSTSConfiguration,
        assertion: Assertion,
        now: Date
    ) -> TokenExchangeError {
        let isErrorResponse = document?.name == "ErrorResponse"
        let error = isErrorResponse ? document?.child("Error") : nil
        // AWS quotes parameters in its messages; everything it says passes through UntrustedText.
        let secrets = [assertion.jwt]
        let code = UntrustedText.identifier(error?.text(at: ["Code"]), redacting: secrets, limit: 64)
        let said = error?.text(at: ["Message"]).map { "AWS said: \(UntrustedText.sanitize($0, redacting: secrets))" }
        let requestId = UntrustedText.identifier(
            (isErrorResponse ? document?.text(at: ["RequestId"]) : nil) ?? response.header("x-amzn-RequestId"), redacting: secrets)
        let failure = UpstreamFailure(response: response, upstream: .init(status: response.status, error: code, traceId: requestId), now: now)
        let codeText = code.map { "AWS STS \($0)" } ?? "AWS STS HTTP \(response.status)"

        switch UpstreamFailure.classify(
            status: response.status, code: code, understood: code != nil, authoritative: [400, 403],
            throttlingCodes: ["Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"],
            unavailableCodes: ["IDPCommunicationError", "InternalFailure", "ServiceUnavailable", "InternalError"])
        {
        case .throttled:
            return failure.throttled { "\(codeText): AWS STS is throttling requests\($0); serving cached credentials where possible" }
        case .unavailable:
            let hint =
                code == "IDPCommunicationError"
                ? "AWS STS could not reach the OIDC provider of iss='\(JWTClaims.shown(assertion.claims.issuer ?? "-"))' to fetch its keys; is its discovery document and JWKS publicly reachable?"
                : "AWS STS at \(configuration.endpoint) failed"
                    + (code == nil
                        ? " with HTTP \(response.status)\(document == nil && !response.body.isEmpty ? " and a body that is not an STS error" : "")"
                        : "")
            return failure.unavailable("\(codeText): " + TokenExchangeError.sentences(hint, said))
        case .rejected:
            return failure.rejected(codeText, hint(code, configuration: configuration, assertion: assertion), said: said)
        }
    }

    /// What a refusal with STS error `code` means for this role and assertion.
    private static func hint(_ code: String?, configuration: AWSSTSConfiguration, assertion: Assertion) -> UpstreamFailure.Hint {
        let who = assertion.claims.federationFields
        switch code {
        case "InvalidIdentityToken":
            return .init(
                text: "AWS STS did not accept the web identity token from \(assertion.origin) (\(who)); check that an IAM OIDC identity provider "
                    + "exists for this issuer in the role's account and lists this audience")
        case "ExpiredTokenException", "ExpiredToken":
            return .init(
                text:
                    "the web identity token from \(assertion.origin) has expired (\(assertion.claims.expiryForMessages)); is the file still being rotated?",
                isRetryable: true)
        case "AccessDenied", "AccessDeniedException":
            return .init(
                text: "the trust policy of \(configuration.roleArn) does not allow AssumeRoleWithWebIdentity for \(who); "
                    + "check its Principal (the OIDC provider) and its conditions on the :aud and :sub keys")
        case "IDPRejectedClaim":
            return .init(text: "the OIDC identity provider configuration rejected a claim of the token (\(who))")
        case "ValidationError", "InvalidParameterValue", "MissingParameter":
            return .init(
                text: "AWS STS refused a parameter: roleArn \(configuration.roleArn), durationSeconds \(configuration.durationSeconds) "
                    + "(must not exceed the role's maximum session duration), or the session name")
        case "RegionDisabledException":
            return .init(
                text:
                    "STS is not activated in region \(configuration.region) for this account; activate it in IAM account settings or use another region"
            )
        case "PackedPolicyTooLarge", "MalformedPolicyDocument":
            return .init(text: "AWS STS refused the session policy")
        case nil:
            return .init(text: "AWS STS refused the request without an STS error document")
        default:
            return .init(
                text: "AWS STS rejected AssumeRoleWithWebIdentity for \(configuration.roleArn) with the token from \(assertion.origin) (\(who))")
        }
    }
}
