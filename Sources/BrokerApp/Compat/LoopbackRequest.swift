import BrokerServer

/// Whether a request to a compatibility listener was addressed to this host: exactly one
/// `Host` naming a loopback address (`localhost`, 127.0.0.0/8, `[::1]`, any port) and a
/// target in origin form (`/path?query`).
///
/// A web page whose DNS name an attacker rebinds to 127.0.0.1 reaches the listener, but
/// its requests still carry the page's name in `Host`; and nothing here is a proxy, so an
/// absolute-form target (`GET http://elsewhere/…`) is never a request meant for us.
enum LoopbackRequest {
    /// Why the request is refused, or nil when it is addressed to this host.
    static func refusal(_ request: HTTPServiceRequest) -> String? {
        guard request.target.hasPrefix("/"), !request.target.hasPrefix("//") else {
            return "the request target must be a path (origin form); this endpoint is not a proxy"
        }
        let hosts = request.headerValues("Host")
        guard hosts.count == 1, isLoopback(hostHeader: hosts[0]) else {
            return "Host must name a loopback address (localhost, 127.0.0.1 or [::1])"
        }
        return nil
    }

    /// `localhost`, a dotted 127.x.y.z, `[::1]` or `[::ffff:127.x.y.z]` (what Java and .NET
    /// clients send for an IPv4 loopback URL on a dual-stack socket), each optionally with `:PORT`.
    static func isLoopback(hostHeader value: String) -> Bool {
        var host = Substring(value.trimmingASCIISpaces().lowercased())
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            let port = host[host.index(after: close)...]
            guard port.isEmpty || isPort(port) else { return false }
            let address = host[host.index(after: host.startIndex)..<close]
            if address == "::1" { return true }
            return address.hasPrefix("::ffff:") && isLoopbackIPv4(address.dropFirst("::ffff:".count))
        }
        if let colon = host.lastIndex(of: ":") {
            guard isPort(host[colon...]) else { return false }
            host = host[..<colon]
        }
        return host == "localhost" || isLoopbackIPv4(host)
    }

    /// A dotted 127.x.y.z.
    private static func isLoopbackIPv4(_ host: Substring) -> Bool {
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127"
            && octets.allSatisfy { $0.count <= 3 && !$0.isEmpty && $0.allSatisfy(\.isASCIIDigit) && Int($0)! <= 255 }
    }

    /// `:` followed by 1-5 digits.
    private static func isPort(_ text: Substring) -> Bool {
        let digits = text.dropFirst()
        return text.first == ":" && (1...5).contains(digits.count) && digits.allSatisfy(\.isASCIIDigit)
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

extension String {
    fileprivate func trimmingASCIISpaces() -> String {
        var text = Substring(self)
        while text.first == " " || text.first == "\t" { text.removeFirst() }
        while text.last == " " || text.last == "\t" { text.removeLast() }
        return String(text)
    }
}
