import CSocketDiag
import Glibc
import NIOCore

/// Finds which user owns the client end of a loopback TCP connection: one question to the
/// kernel's socket table for that exact 4-tuple (`NETLINK_SOCK_DIAG`, see CSocketDiag),
/// answered in microseconds however many sockets the machine has.
///
/// The client's socket is the one whose local end is the client's address and whose remote
/// end is ours. Its uid is the one that created it (like `SO_PEERCRED`, fixed before any
/// request), so a socket created by root and handed to another process still reads as root.
/// There is no pid: mapping a socket to a process means scanning every `/proc/PID/fd`, which
/// is slow, racy and needs privileges. An IPv6 socket connected to `::ffff:127.0.0.1` (Java
/// and .NET by default) is found through the IPv4 address the kernel shows us.
enum LoopbackPeer {
    /// The uid owning `client`'s end of a connection to `server`, or nil when the kernel
    /// knows no such live socket (it closed already, or it is in another network namespace).
    static func owner(client: SocketAddress, server: SocketAddress) -> UInt32? {
        guard let clientEnd = Endpoint(client), let serverEnd = Endpoint(server), clientEnd.address.count == serverEnd.address.count else {
            return nil
        }
        let family = clientEnd.address.count == 4 ? AF_INET : AF_INET6
        var uid: UInt32 = 0
        let result = clientEnd.address.withUnsafeBufferPointer { local in
            serverEnd.address.withUnsafeBufferPointer { remote in
                csockdiag_tcp_owner(family, local.baseAddress, clientEnd.port, remote.baseAddress, serverEnd.port, &uid)
            }
        }
        return result == 0 ? uid : nil
    }

    /// An IP address (4 or 16 bytes, network order) and a port.
    struct Endpoint: Equatable {
        var address: [UInt8]
        var port: UInt16

        init?(_ socketAddress: SocketAddress) {
            // Read from the raw sockaddr (port at offset 2 in both families; the IPv4
            // address at 4, the IPv6 one at 8): the struct members are not visible here in
            // a release build (MemberImportVisibility: they come through NIO's C module).
            let isV6: Bool
            switch socketAddress {
            case .v4: isV6 = false
            case .v6: isV6 = true
            case .unixDomainSocket: return nil
            }
            let parsed = socketAddress.withSockAddr { pointer, length -> (address: [UInt8], port: UInt16)? in
                let raw = UnsafeRawPointer(pointer)
                let (offset, count) = isV6 ? (8, 16) : (4, 4)
                guard Int(length) >= offset + count else { return nil }
                let port = UInt16(raw.load(fromByteOffset: 2, as: UInt8.self)) << 8 | UInt16(raw.load(fromByteOffset: 3, as: UInt8.self))
                return (Array(UnsafeRawBufferPointer(start: raw + offset, count: count)), port)
            }
            guard let parsed else { return nil }
            address = parsed.address
            port = parsed.port
        }
    }
}
