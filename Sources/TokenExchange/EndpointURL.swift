import FoundationEssentials
import Glibc
import PlainJSON

/// Shape checks for a configured token endpoint URL.
///
/// The transport refuses plain http at send time (`UpstreamHTTP.UpstreamTarget`); this check
/// runs once, when the configuration is built, so a bad URL is reported with its field name
/// at load instead of at the first token request.
enum EndpointURL {
    /// The trimmed URL, or a reason it cannot be a token endpoint: it must be absolute `https://`
    /// (plain `http://` only to a loopback host, for local test services), with a host, and
    /// without user info or fragment.
    static func validate(_ raw: String) -> Result<String, Failure> {
        let url = raw.trimmingWhitespace()
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            let host = components.host, !host.isEmpty
        else { return .failure(Failure("must be an absolute https:// URL")) }
        switch scheme {
        case "https":
            break
        case "http" where isLoopback(host):
            break
        case "http":
            return .failure(
                Failure(
                    "must be https (plain http is allowed only to a loopback address): an assertion sent in clear text can be replayed by anyone on the path"
                ))
        default:
            return .failure(Failure("must be an https:// URL, not \(scheme)://"))
        }
        guard components.user == nil, components.password == nil else {
            return .failure(Failure("must not carry credentials in the URL"))
        }
        guard components.fragment == nil else { return .failure(Failure("must not have a #fragment")) }
        return .success(url)
    }

    /// 127.0.0.0/8, ::1 and localhost (what the transport lets through in clear text).
    static func isLoopback(_ host: String) -> Bool {
        let bare = host.trimmed { $0 == "[" || $0 == "]" }.lowercased()
        return bare == "localhost" || bare == "::1" || bare.hasPrefix("127.")
    }

    /// At most 200 characters of `raw` without user info, query or fragment (any of which
    /// may hold a secret), for configuration error messages.
    static func redacted(_ raw: String) -> String {
        var text = Substring(raw.trimmingWhitespace())
        if let cut = text.firstIndex(where: { $0 == "?" || $0 == "#" }) { text = text[..<cut] }
        if let schemeEnd = text.firstRange(of: "://") {
            let afterScheme = text[schemeEnd.upperBound...]
            let authorityEnd = afterScheme.firstIndex(of: "/") ?? afterScheme.endIndex
            if let at = afterScheme[..<authorityEnd].lastIndex(of: "@") {
                text = text[..<schemeEnd.upperBound] + "…@" + afterScheme[afterScheme.index(after: at)...]
            }
        }
        return RFC8693Configuration.printable(String(text))
    }

    /// Why a URL was refused (the caller prefixes the field name).
    struct Failure: Error {
        let reason: String
        init(_ reason: String) { self.reason = reason }
    }
}
