/// The DNS-rebinding check of the compatibility protocols, shared by the daemon's endpoints
/// and `tokenbroker relay`: a request is answered only if its `Host` names a loopback address.
///
/// A web page whose DNS name an attacker rebinds to 127.0.0.1 reaches a loopback listener,
/// but its requests still carry the page's name in `Host`.
public enum LoopbackHost {
    /// Whether a `Host` header value is `localhost`, a dotted 127.x.y.z, `[::1]` or
    /// `[::ffff:127.x.y.z]` (what Java and .NET clients send for an IPv4 loopback URL on a
    /// dual-stack socket), each optionally with `:PORT`.
    public static func isLoopback(hostHeader value: String) -> Bool {
        var host = Substring(trimmingASCIISpaces(value).lowercased())
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
            && octets.allSatisfy { $0.count <= 3 && !$0.isEmpty && $0.allSatisfy(isASCIIDigit) && Int($0)! <= 255 }
    }

    /// `:` followed by 1-5 digits.
    private static func isPort(_ text: Substring) -> Bool {
        let digits = text.dropFirst()
        return text.first == ":" && (1...5).contains(digits.count) && digits.allSatisfy(isASCIIDigit)
    }

    private static func isASCIIDigit(_ character: Character) -> Bool { character.isASCII && character.isNumber }

    private static func trimmingASCIISpaces(_ value: String) -> Substring {
        var text = Substring(value)
        while text.first == " " || text.first == "\t" { text.removeFirst() }
        while text.last == " " || text.last == "\t" { text.removeLast() }
        return text
    }
}
