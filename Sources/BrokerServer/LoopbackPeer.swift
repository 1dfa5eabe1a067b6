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
        guard let clientEnd = Endpoint(client), let serverEnd = Endpoint(server), clientEnd.address.count == serverEnd.address.count else { return nil }
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
            switch socketAddress {
            case .v4(let v4):
                address = withUnsafeBytes(of: v4.address.sin_addr) { Array($0) }
                port = UInt16(bigEndian: v4.address.sin_port)
            case .v6(let v6):
                address = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
                port = UInt16(bigEndian: v6.address.sin6_port)
            case .unixDomainSocket:
                return nil
            }
        }
    }
}
