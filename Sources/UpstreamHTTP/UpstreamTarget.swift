import FoundationEssentials
import Glibc
import PlainJSON
import TokenExchange

/// The parts of a request URL that checks, messages and logs need.
struct UpstreamTarget: Sendable {
    /// `host:port`, as written in error messages ("connect refused to host:port").
    let hostAndPort: String
    /// The path without the query (a query could carry secrets; token endpoints have none).
    let path: String

    /// Parses `url`, refusing anything but https (or http to loopback when allowed).
    ///
    /// Checked before anything is sent: an assertion must never cross the network in clear text.
    init(url: String, allowInsecureLoopback: Bool) throws(TokenExchangeError) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            let host = components.host, !host.isEmpty
        else {
            throw TokenExchangeError(code: .upstreamUnavailable, message: "invalid token endpoint URL '\(Self.redacted(url))'", isRetryable: false)
        }
        switch scheme {
        case "https":
            break
        case "http" where allowInsecureLoopback && Self.isLoopback(host):
            break
        case "http" where Self.isMetadataService(host):
            // The cloud metadata server speaks plain http on a link-local address that
            // is never routed off the machine.
            break
        case "http":
            throw TokenExchangeError(
                code: .upstreamUnavailable,
                message: "refusing to send an assertion over plain http to \(host); the token endpoint must be https",
                isRetryable: false
            )
        default:
            throw TokenExchangeError(
                code: .upstreamUnavailable, message: "unsupported URL scheme '\(scheme)' for the token endpoint \(host); use https",
                isRetryable: false)
        }
        let port = components.port ?? (scheme == "https" ? 443 : 80)
        self.hostAndPort = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        self.path = components.path.isEmpty ? "/" : components.path
    }

    /// The cloud metadata server (link-local, answered by the hypervisor).
    static func isMetadataService(_ host: String) -> Bool {
        let bare = host.lowercased()
        return bare == "metadata.google.internal" || bare == "169.254.169.254"
    }

    /// Loopback names and addresses: 127.0.0.0/8, ::1 and localhost.
    static func isLoopback(_ host: String) -> Bool {
        let bare = host.trimmed { $0 == "[" || $0 == "]" }.lowercased()
        return bare == "localhost" || bare == "::1" || bare.hasPrefix("127.")
    }

    /// A URL without query and user info, for messages about URLs that failed to parse.
    private static func redacted(_ url: String) -> String {
        String(url.prefix { $0 != "?" && $0 != "#" }.prefix(200))
    }
}
