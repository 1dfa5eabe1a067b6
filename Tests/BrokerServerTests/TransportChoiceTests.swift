import Foundation
import Glibc
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import BrokerServer

/// `BrokerServers.make`, the one place that picks a transport: a socket the service manager
/// passes is asked for its family, and served by the server of that transport.
@Suite struct TransportChoice {
    private static let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    @Test func configuredListenersGetTheirTransport() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var unix = UnixServerConfiguration()
        unix.socketPath = "/nonexistent/broker.sock"
        let tcp = TCPServerConfiguration(address: TCPAddress(host: "127.0.0.1", port: 0))
        var askedForGroup = false
        func provideGroup() -> any EventLoopGroup {
            askedForGroup = true
            return group
        }
        #expect(BrokerServers.make(.unix(unix), responder: ScriptedResponder(), group: provideGroup, logger: Self.logger) is UnixBrokerServer)
        #expect(!askedForGroup, "a Unix listener takes no NIO group")
        #expect(BrokerServers.make(.tcp(tcp), responder: ScriptedResponder(), group: { group }, logger: Self.logger) is TCPBrokerServer)
        try await group.shutdownGracefully()
    }

    @Test func anInheritedUnixSocketIsServedOnTheBrokersLoopsAndNotUnlinked() async throws {
        var template = Array("/tmp/tb-XXXXXX".utf8CString)
        let directory = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/inherited.sock"
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var configuration = UnixServerConfiguration()
        configuration.inheritedDescriptor = try UnixSocketPath.listen(at: path, backlog: 16)
        configuration.socketPath = "\(directory)/configured.sock"  // not bound: the inherited socket is served instead
        let server = BrokerServers.make(.unix(configuration), responder: ScriptedResponder(), group: { group }, logger: Self.logger)
        #expect(server is UnixBrokerServer)
        let runner = Task { try await server.run() }
        try await server.waitUntilListening()
        #expect(server.localPort == nil)
        #expect(try Self.ping(family: AF_UNIX, unixPath: path).contains(#""ok":true"#))
        runner.cancel()
        try await runner.value
        #expect(access(path, F_OK) == 0)  // the service manager's socket stays
        #expect(access(configuration.socketPath, F_OK) != 0)
        try await group.shutdownGracefully()
    }

    @Test func anInheritedTCPSocketIsServedByNIO() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(port: 0)
        var length = Self.inetLength
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0
            }
        }
        try #require(bound && listen(descriptor, 16) == 0, "cannot listen on 127.0.0.1:0: \(errno)")
        var configuration = UnixServerConfiguration()
        configuration.inheritedDescriptor = descriptor  // configured as the Unix socket, inherited as TCP
        let server = BrokerServers.make(.unix(configuration), responder: ScriptedResponder(), group: { group }, logger: Self.logger)
        #expect(server is TCPBrokerServer)
        let runner = Task { try await server.run() }
        try await server.waitUntilListening()
        let port = withUnsafeBytes(of: address) { Int($0[2]) << 8 | Int($0[3]) }  // sin_port, big-endian
        #expect(server.localPort == port)
        #expect(try Self.ping(family: AF_INET, port: port).contains(#""ok":true"#))
        runner.cancel()
        try await runner.value
        try await group.shutdownGracefully()
    }

    /// 127.0.0.1:`port` as a `sockaddr_in`, written byte by byte: in the build with warnings as
    /// errors, `sockaddr_in`'s members count as CNIOLinux's, which tests cannot import.
    private static func loopback(port: UInt16) -> sockaddr_storage {
        var storage = sockaddr_storage()
        storage.ss_family = sa_family_t(AF_INET)
        withUnsafeMutableBytes(of: &storage) { bytes in
            bytes[2] = UInt8(port >> 8)
            bytes[3] = UInt8(port & 0xFF)
            bytes[4] = 127
            bytes[7] = 1
        }
        return storage
    }

    private static let inetLength = socklen_t(16)  // sizeof(struct sockaddr_in)

    /// One NDJSON ping, the write side shut, everything read until the server closes
    /// (reads time out after 10 s, so a bug cannot hang the run).
    private static func ping(family: CInt, unixPath: String = "", port: Int = 0) throws -> String {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var storage = sockaddr_storage()
        var length: socklen_t
        if family == AF_UNIX {
            var unix = sockaddr_un()
            unix.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &unix.sun_path) { $0.copyBytes(from: Array(unixPath.utf8) + [0]) }
            withUnsafeMutableBytes(of: &storage) { $0.copyBytes(from: withUnsafeBytes(of: unix) { Array($0) }) }
            length = socklen_t(MemoryLayout<sockaddr_un>.size)
        } else {
            storage = loopback(port: UInt16(port))
            length = inetLength
        }
        let connected = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) } }
        guard connected == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        let request = Array(#"{"op":"ping","id":1}"#.utf8) + [0x0A]
        guard write(fd, request, request.count) == request.count else { throw POSIXError(.EIO) }
        shutdown(fd, Int32(SHUT_WR))
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while case let n = read(fd, &chunk, chunk.count), n != 0 {
            guard n > 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            received += chunk[..<n]
        }
        return String(decoding: received, as: UTF8.self)
    }
}
