import CSocketDiag
import Glibc

/// Who may use the relay (`--peers`). Its answers carry its own caller's tokens (the broker
/// attests the relay, not the process behind it), so on a machine whose loopback other
/// users share — a VM, a `hostNetwork` pod — it serves only its own user's processes and
/// root by default. In a pod's own network namespace only the pod reaches 127.0.0.1, and the
/// app often runs as another uid than the relay: there `--peers any`.
enum RelayPeers: String, CaseIterable {
    /// Processes of the relay's uid, and root.
    case sameUser = "same-user"
    /// Whatever reaches the listener.
    case any

    /// Why `connection` may not be served, or nil when it may.
    func refusal(of connection: Int32) -> String? {
        guard self == .sameUser else { return nil }
        let own = geteuid()
        guard let uid = Self.owner(of: connection) else {
            return "the relay cannot tell which user this connection belongs to; it serves only uid \(own) and root (--peers same-user)"
        }
        guard uid != own, uid != 0 else { return nil }
        return
            "the relay serves only uid \(own) and root, not uid \(uid) (--peers same-user); in a pod's own network namespace, run it with --peers any"
    }

    /// The uid owning the client's end of accepted TCP `connection`, asked of the kernel's
    /// socket table (as the daemon's compatibility listener does); nil if it is not found.
    static func owner(of connection: Int32) -> UInt32? {
        guard let peer = endpoint(connection, getpeername), let local = endpoint(connection, getsockname), peer.family == local.family else {
            return nil
        }
        var uid: UInt32 = 0
        let result = peer.address.withUnsafeBufferPointer { client in
            local.address.withUnsafeBufferPointer { server in
                csockdiag_tcp_owner(peer.family, client.baseAddress, peer.port, server.baseAddress, local.port, &uid)
            }
        }
        return result == 0 ? uid : nil
    }

    /// One end of `connection`: its family, address bytes (network order) and port.
    private static func endpoint(
        _ connection: Int32, _ name: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
    ) -> (family: Int32, address: [UInt8], port: UInt16)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { name(connection, $0, &length) } }
        guard named == 0 else { return nil }
        let family = Int32(storage.ss_family)
        return withUnsafeBytes(of: storage) { raw -> (Int32, [UInt8], UInt16)? in
            // The port at offset 2 in both families; the IPv4 address at 4, the IPv6 one at 8.
            let (offset, count) = family == AF_INET6 ? (8, 16) : family == AF_INET ? (4, 4) : (0, 0)
            guard count > 0 else { return nil }
            let port = UInt16(raw[2]) << 8 | UInt16(raw[3])
            return (family, Array(raw[offset..<offset + count]), port)
        }
    }
}
