import Foundation
import Glibc
import Testing

@testable import tokenbroker_doctor

/// The doctor's `connect(2)` (BrokerClient's `UnixSocketClient`, which the CLI connects
/// with too) against real sockets in a temp directory: the errno is the kernel's verdict.
@Suite struct SocketConnectTests {
    @Test func theErrnoOfEachKindOfPath() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tb-connect-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }

        #expect(SocketCheck.connectError("\(directory)/missing") == ENOENT)
        #expect(SocketCheck.connectError("\(directory)/" + String(repeating: "x", count: 120)) == ENAMETOOLONG)

        let path = "\(directory)/broker.sock"
        let (listener, bound) = boundUnixSocket(path)
        defer { close(listener) }
        try #require(bound == 0)
        // Bound, not listening: a stale socket file.
        #expect(SocketCheck.connectError(path) == ECONNREFUSED)
        try #require(listen(listener, 4) == 0)
        #expect(SocketCheck.connectError(path) == 0)
    }
}

/// A Unix stream socket bound (not listening) at `path`, and `bind`'s result.
func boundUnixSocket(_ path: String) -> (descriptor: Int32, bound: Int32) {
    let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: Array(path.utf8) + [0])
    }
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    return (listener, bound)
}
