import Glibc
import NIOCore
import Testing

@testable import BrokerServer

@Suite("loopback TCP peer uid")
struct LoopbackPeerTests {
    @Test("a row of /proc/net/tcp is matched by both ends and gives its uid")
    func parsesTheTable() throws {
        let table = """
              sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
               1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 1002 1 0000000000000000 20 4 30 10 -1
            """
        let client = LoopbackPeer.Endpoint(address: [127, 0, 0, 1], port: 0xC350)
        let server = LoopbackPeer.Endpoint(address: [127, 0, 0, 1], port: 0x1F90)
        #expect(LoopbackPeer.owner(in: table, client: client, server: server) == 1000)
        #expect(LoopbackPeer.owner(in: table, client: server, server: client) == nil)
    }

    @Test("a real loopback connection is found with the uid that made it", arguments: ["127.0.0.1", "::1"])
    func realConnection(_ host: String) throws {
        let family = host.contains(":") ? AF_INET6 : AF_INET
        let listener = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var server = try SocketAddress(ipAddress: host, port: 0)
        _ = server.withSockAddr { bind(listener, $0, socklen_t($1)) }
        listen(listener, 4)
        server = try SocketAddress(ipAddress: host, port: localPort(listener))
        let client = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        #expect(server.withSockAddr { connect(client, $0, socklen_t($1)) } == 0)
        let clientAddress = try SocketAddress(ipAddress: host, port: localPort(client))
        #expect(LoopbackPeer.owner(client: clientAddress, server: server) == getuid())
    }

    /// The port a socket is bound to (the same offset in sockaddr_in and sockaddr_in6).
    private func localPort(_ descriptor: Int32) -> Int {
        var bytes = [UInt8](repeating: 0, count: 128)
        var length = socklen_t(bytes.count)
        _ = bytes.withUnsafeMutableBytes { getsockname(descriptor, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length) }
        return Int(bytes[2]) << 8 | Int(bytes[3])
    }
}
