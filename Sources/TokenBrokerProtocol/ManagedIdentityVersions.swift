import Glibc

/// Which `api-version`s the managed-identity protocols accept, and the shapes that differ by
/// version. One table for the daemon's compatibility endpoints and `tokenbroker relay`.
public enum ManagedIdentityVersions {
    /// The App Service protocol a request speaks, chosen by its `api-version`.
    public enum AppService: Sendable, Equatable {
        /// 2019-08-01: `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`, the `X-IDENTITY-HEADER` header,
        /// `client_id`, `expires_on` in Unix seconds.
        case current
        /// 2017-09-01: `MSI_ENDPOINT`/`MSI_SECRET`, the `secret` header, `clientid`, `expires_on`
        /// as `MM/DD/YYYY HH:MM:SS +00:00` (azure-identity < 1.7, msrestazure, older `az`).
        case legacy2017

        /// The request header carrying the secret.
        public var secretHeader: String { self == .current ? "X-IDENTITY-HEADER" : "secret" }
    }

    /// The App Service protocol for `version`, nil when it is neither.
    public static func appService(_ version: String) -> AppService? {
        switch version {
        case "2019-08-01": .current
        case "2017-09-01": .legacy2017
        default: nil
        }
    }

    /// The versions IMDS serves: its documented list (learn.microsoft.com, "Azure Instance
    /// Metadata Service", Versioning) from 2018-02-01, when the identity category was
    /// introduced. IMDS answers the token path for each of them alike.
    public static let imds: [String] = [
        "2018-02-01", "2018-04-02", "2018-10-01", "2019-02-01", "2019-03-11", "2019-04-30", "2019-06-01", "2019-06-04",
        "2019-08-01", "2019-08-15", "2019-11-01", "2020-06-01", "2020-07-15", "2020-09-01", "2020-10-01", "2020-12-01",
        "2021-01-01", "2021-02-01", "2021-03-01", "2021-05-01", "2021-10-01", "2021-11-01", "2021-11-15", "2021-12-13",
        "2023-07-01", "2023-11-15", "2024-03-15", "2024-07-17", "2025-04-07",
    ]
    private static let imdsSet = Set(imds)

    /// Whether IMDS serves `version`.
    public static func imdsAccepts(_ version: String) -> Bool { imdsSet.contains(version) }

    /// IMDS's own answer to a missing or unknown `api-version` (HTTP 400): its `error`
    /// sentence and the newest versions, not the `error_description` shape of token errors.
    public static func imdsVersionErrorBody() -> String {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field(
            "error", "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds")
        writer.beginArray("newest-versions")
        for version in imds.suffix(3).reversed() { writer.element(version) }
        writer.endArray()
        writer.endObject()
        return writer.text
    }

    /// `expires_on` of the 2017-09-01 protocol: `MM/DD/YYYY HH:MM:SS +00:00` in UTC, as App
    /// Service on Linux sends it (azure-identity < 1.7 parses exactly this or an integer).
    public static func legacyExpiresOn(_ seconds: Int64) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return
            "\(two(parts.tm_mon + 1))/\(two(parts.tm_mday))/\(parts.tm_year + 1900) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) +00:00"
    }
}
