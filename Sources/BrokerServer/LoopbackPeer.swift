import Glibc
import NIOCore

/// Finds which user owns the client end of a loopback TCP connection, from the
/// kernel's socket table (`/proc/net/tcp`, `/proc/net/tcp6`).
///
/// The client's socket appears there as a row whose local address is the client's
/// address and whose remote address is ours, with the uid that created it. That
/// uid is set when the socket is created (like `SO_PEERCRED`, which is fixed at
/// connect time), so a socket created by root and handed to another process still
/// reads as root. There is no pid: mapping a socket inode to a process means
/// scanning every `/proc/PID/fd`, which is slow, racy and needs privileges.
enum LoopbackPeer {
    /// The uid owning `client`'s end of a connection to `server`, or nil when no row matches.
    static func owner(client: SocketAddress, server: SocketAddress) -> UInt32? {
        guard let clientEnd = Endpoint(client), let serverEnd = Endpoint(server) else { return nil }
        let table = clientEnd.address.count == 4 ? "/proc/net/tcp" : "/proc/net/tcp6"
        guard let text = readAll(table) else { return nil }
        return owner(in: text, client: clientEnd, server: serverEnd)
    }

    /// An IP address (4 or 16 bytes, network order) and a port.
    struct Endpoint: Equatable {
        var address: [UInt8]
        var port: UInt16

        init(address: [UInt8], port: UInt16) {
            self.address = address
            self.port = port
        }

        init?(_ socketAddress: SocketAddress) {
            guard let text = socketAddress.ipAddress, let port = socketAddress.port, let portNumber = UInt16(exactly: port) else { return nil }
            let isV6 = socketAddress.protocol == .inet6
            var raw = [UInt8](repeating: 0, count: isV6 ? 16 : 4)
            guard inet_pton(isV6 ? AF_INET6 : AF_INET, text, &raw) == 1 else { return nil }
            self.init(address: raw, port: portNumber)
        }

        /// Parses `0100007F:1F90`: the kernel prints each 32-bit word of the address as
        /// the host-order number holding the network-order bytes, then the port in hex.
        init?(procField field: Substring) {
            let parts = field.split(separator: ":")
            guard parts.count == 2, parts[0].count == 8 || parts[0].count == 32, let port = UInt16(parts[1], radix: 16) else { return nil }
            var bytes: [UInt8] = []
            var rest = parts[0]
            while !rest.isEmpty {
                guard let word = UInt32(rest.prefix(8), radix: 16) else { return nil }
                withUnsafeBytes(of: word) { bytes.append(contentsOf: $0) }
                rest = rest.dropFirst(8)
            }
            self.init(address: bytes, port: port)
        }
    }

    /// The uid column of the row with local address `client` and remote address `server`.
    static func owner(in table: String, client: Endpoint, server: Endpoint) -> UInt32? {
        for line in table.split(separator: "\n").dropFirst() {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid …
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 7, Endpoint(procField: fields[1]) == client, Endpoint(procField: fields[2]) == server else { continue }
            return UInt32(fields[7])
        }
        return nil
    }

    private static func readAll(_ path: String) -> String? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        // Bounded: a node with very many sockets makes this table large.
        while bytes.count < 32 * 1024 * 1024 {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes.append(contentsOf: chunk[..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
