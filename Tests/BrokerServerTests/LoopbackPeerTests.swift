import Foundation
import Glibc
import NIOCore
import OffPool
import Testing

@testable import BrokerServer

@Suite("loopback TCP peer uid")
struct LoopbackPeerTests {
    /// A uid no account uses: `setpriv` needs no passwd entry.
    static let otherUID: UInt32 = 4131

    @Test(
        "a connection made by another user is found with that user's uid, only by its own end",
        arguments: [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("127.0.0.1", "::ffff:127.0.0.1")])
    func connectionOfAnotherUser(listenOn host: String, connectTo target: String) async throws {
        let listener = try Listener(host: host)
        defer { listener.close() }
        // socat as the other uid connects and holds the connection while its stdin is open.
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        let address = target.contains(":") ? "TCP6:[\(target)]:\(listener.port)" : "TCP4:\(target):\(listener.port)"
        client.arguments = ["--reuid", "\(Self.otherUID)", "--regid", "\(Self.otherUID)", "--clear-groups", "/usr/bin/socat", "-", address]
        let input = Pipe()
        client.standardInput = input
        try client.run()
        let outcome = Result { () throws -> Void in
            let (accepted, peer) = try listener.accept()
            defer { Glibc.close(accepted) }

            #expect(LoopbackPeer.owner(client: peer, server: listener.address) == Self.otherUID)
            // The broker's own end of the same connection belongs to the broker (root here):
            // asking with the ends swapped must not be read as the caller's.
            #expect(LoopbackPeer.owner(client: listener.address, server: peer) == getuid())
        }
        // socat ends when its stdin does; waited for by sleeping, not `waitUntilExit()` (`exited`).
        try? input.fileHandleForWriting.close()
        await exited(client)
        try outcome.get()
    }

    @Test(
        "a client that is gone is unknown: reset, or closed (once our side acknowledges its FIN its end is a timewait entry, reported in FIN-WAIT-2 with uid 0 and no inode)",
        arguments: [true, false])
    func goneClientIsUnknown(reset: Bool) async throws {
        let listener = try Listener(host: "127.0.0.1")
        defer { listener.close() }
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(listener.address.withSockAddr { connect(client, $0, socklen_t($1)) } == 0)
        let (accepted, peer) = try listener.accept()
        defer { Glibc.close(accepted) }
        #expect(LoopbackPeer.owner(client: peer, server: listener.address) == getuid())
        if reset {
            var abort = linger(l_onoff: 1, l_linger: 0)  // RST: the client's socket is gone at once
            setsockopt(client, SOL_SOCKET, SO_LINGER, &abort, socklen_t(MemoryLayout<linger>.size))
        }
        Glibc.close(client)
        try await Task.sleep(for: .milliseconds(50))  // the FIN acknowledged
        #expect(LoopbackPeer.owner(client: peer, server: listener.address) == nil)
    }
}

/// A listening TCP socket on a loopback address, port 0.
private struct Listener {
    let descriptor: Int32
    let address: SocketAddress
    var port: Int { address.port ?? 0 }

    init(host: String) throws {
        let family = host.contains(":") ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        let wildcard = try SocketAddress(ipAddress: host, port: 0)
        guard wildcard.withSockAddr({ bind(fd, $0, socklen_t($1)) }) == 0, listen(fd, 4) == 0 else {
            Glibc.close(fd)
            throw TestFailure("cannot listen on \(host): \(String(cString: strerror(errno)))")
        }
        descriptor = fd
        address = try Self.name(of: fd, getsockname)
    }

    func accept() throws -> (Int32, SocketAddress) {
        let accepted = Glibc.accept(descriptor, nil, nil)
        guard accepted >= 0 else { throw TestFailure("accept: \(String(cString: strerror(errno)))") }
        return (accepted, try Self.name(of: accepted, getpeername))
    }

    func close() { Glibc.close(descriptor) }

    static func name(
        of descriptor: Int32, _ call: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
    ) throws -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(descriptor, $0, &length) } }
        guard result == 0 else { throw TestFailure("getsockname: \(String(cString: strerror(errno)))") }
        let family = Int32(storage.ss_family)
        return try withUnsafePointer(to: &storage) { pointer in
            switch family {
            case AF_INET: return SocketAddress(pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee })
            case AF_INET6: return SocketAddress(pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee })
            default: throw TestFailure("not an IP socket")
            }
        }
    }
}

private struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
