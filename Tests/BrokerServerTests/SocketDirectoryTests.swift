import Foundation
import Glibc
import Testing

@testable import BrokerServer

/// Whoever can write the socket's directory can unlink the socket and bind their own in
/// its place: the broker listens only in a directory no one else can change.
@Suite("Socket directory")
struct SocketDirectoryTests {
    static func directory(mode: mode_t, owner: uid_t) throws -> String {
        var template = Array("/tmp/tbdir-XXXXXX".utf8CString)
        let made = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) })
        let path = String(cString: made)
        #expect(chmod(path, mode) == 0)
        #expect(chown(path, owner, gid_t.max) == 0)
        return path
    }

    @Test(
        "refused: world-writable (sticky or not), or owned by another user",
        arguments: [
            (0o1777 as mode_t, 0 as uid_t, "world-writable"),
            (0o0777, 0, "world-writable"),
            (0o0755, 65534, "owned by uid 65534"),
        ])
    func refused(mode: mode_t, owner: uid_t, reason: String) throws {
        let path = try Self.directory(mode: mode, owner: owner)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let error = #expect(throws: BrokerServerError.self) { try UnixSocketPath.prepare("\(path)/broker.sock") }
        #expect(error?.code == .unsafeSocketDirectory)
        #expect(error?.message.contains(reason) == true && error?.message.contains(path) == true, "\(error?.message ?? "")")
    }

    @Test("accepted: root's or the daemon's own, not writable by others")
    func accepted() throws {
        for (mode, owner) in [(0o755 as mode_t, 0 as uid_t), (0o700, geteuid()), (0o1770, 0)] {
            let path = try Self.directory(mode: mode, owner: owner)
            defer { try? FileManager.default.removeItem(atPath: path) }
            #expect(throws: Never.self) { try UnixSocketPath.prepare("\(path)/broker.sock") }
        }
    }
}
