import BrokerServer
import FoundationEssentials
import Glibc
import PlainJSON
import TokenBrokerProtocol
import TokenExchange

/// Whether a request to a compatibility listener was addressed to this host: exactly one
/// `Host` naming a loopback address (`localhost`, 127.0.0.0/8, `[::1]`, any port) and a
/// target in origin form (`/path?query`).
///
/// A web page whose DNS name an attacker rebinds to 127.0.0.1 reaches the listener, but
/// its requests still carry the page's name in `Host`; and nothing here is a proxy, so an
/// absolute-form target (`GET http://elsewhere/…`) is never a request meant for us.
enum LoopbackRequest {
    /// Why the request is refused, or nil when it is addressed to this host. `imdsHost`:
    /// the IMDS address, when the listener is bound to it on this pod's or namespace's own
    /// interface (clients with it hard-coded send it in `Host`).
    static func refusal(_ request: HTTPServiceRequest, alsoAccepting imdsHost: String? = nil) -> String? {
        guard request.target.hasPrefix("/"), !request.target.hasPrefix("//") else {
            return "the request target must be a path (origin form); this endpoint is not a proxy"
        }
        let hosts = request.headerValues("Host")
        guard hosts.count == 1, isLoopback(hostHeader: hosts[0]) || imdsHost.map({ names(hosts[0], $0) }) == true else {
            return "Host must name a loopback address (localhost, 127.0.0.1 or [::1])" + (imdsHost.map { " or \($0)" } ?? "")
        }
        return nil
    }

    /// Whether a `Host` value is `address`, with or without a port.
    private static func names(_ value: String, _ address: String) -> Bool {
        let host = value.trimmed()
        guard host.hasPrefix(address) else { return false }
        let port = host.dropFirst(address.count)
        return port.isEmpty || (port.first == ":" && (2...6).contains(port.count) && port.dropFirst().allSatisfy { $0.isASCII && $0.isNumber })
    }

    /// `localhost`, 127.x.y.z, `[::1]` or `[::ffff:127.x.y.z]`, with an optional port
    /// (`LoopbackHost`, shared with `tokenbroker relay`).
    static func isLoopback(hostHeader value: String) -> Bool {
        LoopbackHost.isLoopback(hostHeader: value)
    }
}
