import Glibc

/// A loopback TCP address for the relay: `127.0.0.0/8` or `[::1]`, with a port (0 picks a
/// free one). Anything else is refused: the relay's answers are tokens, and a pod's
/// loopback is reachable only from that pod.
struct LoopbackAddress: Sendable {
    /// `127.0.0.1` or `::1` (without brackets).
    let host: String
    let port: UInt16
    let isIPv6: Bool

    /// Parses `HOST:PORT`, `[::1]:PORT`; nil with the reason when it is not loopback.
    static func parse(_ text: String) -> Result<LoopbackAddress, LoopbackAddressError> {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return .failure(LoopbackAddressError("'\(text)' is not [::1]:PORT"))
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return .failure(LoopbackAddressError("'\(text)' has no :PORT")) }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let port = UInt16(portText) else { return .failure(LoopbackAddressError("'\(portText)' is not a port (0-65535)")) }
        var v4 = in_addr()
        if inet_pton(AF_INET, String(host), &v4) == 1 {
            guard UInt32(bigEndian: v4.s_addr) >> 24 == 127 else {
                return .failure(LoopbackAddressError("\(host) is not a loopback address; the relay listens on 127.0.0.0/8 or [::1] only"))
            }
            return .success(LoopbackAddress(host: String(host), port: port, isIPv6: false))
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, String(host), &v6) == 1 {
            let loopback = withUnsafeBytes(of: &v6) { Array($0) } == [UInt8](repeating: 0, count: 15) + [1]
            guard loopback else {
                return .failure(LoopbackAddressError("\(host) is not a loopback address; the relay listens on 127.0.0.0/8 or [::1] only"))
            }
            return .success(LoopbackAddress(host: "::1", port: port, isIPv6: true))
        }
        return .failure(LoopbackAddressError("'\(host)' is not an IP address; give 127.0.0.1:PORT or [::1]:PORT"))
    }

    /// `127.0.0.1:8181` or `[::1]:8181`, with `port` in place of this address's.
    func display(port: UInt16? = nil) -> String {
        let port = port ?? self.port
        return isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// A listening socket bound to this address, and the port it got.
    func listen(backlog: Int32 = 128) throws(LoopbackAddressError) -> (descriptor: Int32, port: UInt16) {
        let descriptor = socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw LoopbackAddressError("cannot create a socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        // A restart is not refused while the last run's connections sit in TIME-WAIT.
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if isIPv6 { setsockopt(descriptor, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size)) }
        let bound = withSocketAddress { bind(descriptor, $0, $1) }
        guard bound == 0, Glibc.listen(descriptor, backlog) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw LoopbackAddressError("cannot listen on \(display()): \(reason)")
        }
        var storage = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) } }
        // sin_port and sin6_port sit at the same offset.
        return (descriptor, UInt16(bigEndian: storage.sin6_port))
    }

    /// A socket connected to this address (for `--check`), with `timeoutSeconds` on reads and writes.
    func connect(timeoutSeconds: Int) throws(LoopbackAddressError) -> Int32 {
        let descriptor = socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw LoopbackAddressError("cannot create a socket: \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard withSocketAddress({ Glibc.connect(descriptor, $0, $1) }) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw LoopbackAddressError("cannot connect to the relay at \(display()): \(reason)")
        }
        return descriptor
    }

    private func withSocketAddress(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        if isIPv6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            _ = inet_pton(AF_INET6, host, &address.sin6_addr)
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        _ = inet_pton(AF_INET, host, &address.sin_addr)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}

/// Why a relay address cannot be used.
struct LoopbackAddressError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
