import FoundationEssentials
import Glibc

/// Where and as whom to exchange with Microsoft Entra ID.
public struct EntraConfiguration: Sendable, Hashable {
    /// The directory (tenant) ID or a verified domain.
    public var tenantId: String
    /// The application (client) ID of the app registration or user-assigned managed identity.
    public var clientId: String
    /// The authority host, `https://login.microsoftonline.com` unless set
    /// (`login.chinacloudapi.cn`, `login.microsoftonline.us`, or a test service).
    public var authorityHost: String

    /// The public-cloud authority host.
    public static let publicCloudAuthorityHost = "https://login.microsoftonline.com"

    /// Creates a configuration, normalising `authorityHost` (no trailing slash).
    ///
    /// Throws when the host is not an absolute `https://` URL: sending an assertion
    /// over plain HTTP would hand it to anyone on the path.
    public init(tenantId: String, clientId: String, authorityHost: String = Self.publicCloudAuthorityHost) throws(EntraConfigurationError) {
        var host = authorityHost.trimmingWhitespace()
        while host.hasSuffix("/") { host.removeLast() }
        guard host.lowercased().hasPrefix("https://"), host.count > "https://".count else {
            throw EntraConfigurationError("authorityHost must be an https:// URL, got '\(authorityHost)'")
        }
        // User info would be sent nowhere useful and logged everywhere the host is; the
        // transport refuses such a URL, so refuse it here, where the field is known.
        guard let components = URLComponents(string: host), components.host?.isEmpty == false, components.user == nil, components.password == nil,
            components.query == nil, components.fragment == nil
        else {
            throw EntraConfigurationError(
                "authorityHost must be https://HOST[:PORT] without user info, query or fragment, got '\(EndpointURL.redacted(authorityHost))'")
        }
        guard !tenantId.isEmpty, tenantId.allSatisfy(Self.isTenantCharacter) else {
            throw EntraConfigurationError("tenantId must be a GUID or domain name, got '\(tenantId)'")
        }
        guard !clientId.isEmpty, !clientId.contains(where: \.isWhitespace) else {
            throw EntraConfigurationError("clientId must be a non-empty application ID, got '\(clientId)'")
        }
        self.tenantId = tenantId
        self.clientId = clientId
        self.authorityHost = host
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    public var tokenEndpoint: String { "\(authorityHost)/\(tenantId)/oauth2/v2.0/token" }

    private static func isTenantCharacter(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == ".")
    }
}

/// An invalid Entra setting.
public struct EntraConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong.
    public let message: String
    /// Creates an error.
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
