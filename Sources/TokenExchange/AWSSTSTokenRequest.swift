/// Builds the AWS STS `AssumeRoleWithWebIdentity` request (Query API, version 2011-06-15).
///
/// The call is unsigned by design: the web identity token is the credential, so no AWS
/// keys are needed to make it, and none are sent.
public enum AWSSTSTokenRequest {
    /// `2011-06-15`, the STS API version.
    public static let apiVersion = "2011-06-15"

    /// The form fields in the order we send them.
    public static func formFields(configuration: AWSSTSConfiguration, sessionName: String, assertion: Assertion) -> [(String, String)] {
        [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", apiVersion),
            ("RoleArn", configuration.roleArn),
            ("RoleSessionName", sessionName),
            ("WebIdentityToken", assertion.jwt),
            ("DurationSeconds", String(configuration.durationSeconds)),
        ]
    }

    /// The complete `POST` to the configured endpoint (its path, `/` when it has none).
    public static func make(configuration: AWSSTSConfiguration, sessionName: String, assertion: Assertion) -> UpstreamRequest {
        let body = FormEncoding.encode(formFields(configuration: configuration, sessionName: sessionName, assertion: assertion))
        return UpstreamRequest(
            method: "POST",
            url: url(configuration.endpoint),
            headers: [
                HeaderField("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
                HeaderField("Accept", "application/xml"),
            ],
            body: Array(body.utf8)
        )
    }

    /// `https://host[:port]` gets the `/` path the Query API is served on.
    static func url(_ endpoint: String) -> String {
        guard let schemeEnd = endpoint.firstRange(of: "://") else { return endpoint }
        return endpoint[schemeEnd.upperBound...].contains("/") ? endpoint : endpoint + "/"
    }
}
