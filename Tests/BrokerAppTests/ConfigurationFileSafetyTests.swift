import Foundation
import Testing

@testable import BrokerApp

@Suite("Configuration file permissions")
struct ConfigurationFileSafetyTests {
    @Test(
        "writable by group or others, or owned by another user, is named with its mode",
        arguments: [
            (0o600 as mode_t, 0 as uid_t, [String]()),
            (0o644, 0, []),
            (0o664, 0, ["writable by its group"]),
            (0o666, 0, ["writable by its group and every user"]),
            (0o602, 0, ["writable by every user"]),
            (0o644, 4242, ["owned by uid 4242"]),
            (0o646, 4242, ["writable by every user", "owned by uid 4242"]),
        ])
    func warnings(mode: mode_t, owner: uid_t, expected: [String]) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tb-config-\(getpid())-\(mode)-\(owner).yaml").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data("{}\n".utf8)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(chmod(path, mode) == 0)
        #expect(chown(path, owner, gid_t.max) == 0)
        let warnings = ConfigurationFileSafety.warnings(path: path, daemonUID: 999)
        #expect(warnings.count == expected.count)
        for (warning, text) in zip(warnings, expected) {
            #expect(warning.message.contains(text), "\(warning.message)")
            #expect(warning.message.contains(path) && warning.message.contains("mode 0\(String(mode, radix: 8))"))
        }
    }

    @Test("the daemon's own user may own it")
    func daemonOwned() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tb-config-\(getpid())-own.yaml").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data("{}\n".utf8)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(chmod(path, 0o600) == 0 && chown(path, 4242, gid_t.max) == 0)
        #expect(ConfigurationFileSafety.warnings(path: path, daemonUID: 4242).isEmpty)
        #expect(ConfigurationFileSafety.warnings(path: "/no/such/file", daemonUID: 4242).isEmpty)
    }
}

@Suite("Configuration file permissions through a symlink")
struct ConfigurationFileSymlinkSafetyTests {
    @Test("a symlink (a ConfigMap volume's config.yaml) is judged by the file it names, not by the link's 0777")
    func symlinkIsFollowed() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tb-config-link-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let real = "\(directory)/real.yaml", link = "\(directory)/config.yaml"
        #expect(FileManager.default.createFile(atPath: real, contents: Data("{}\n".utf8)))
        #expect(chmod(real, 0o644) == 0 && chown(real, 0, gid_t.max) == 0)
        #expect(symlink(real, link) == 0)
        #expect(ConfigurationFileSafety.warnings(path: link, daemonUID: 999).isEmpty)
        #expect(chmod(real, 0o666) == 0)
        let warnings = ConfigurationFileSafety.warnings(path: link, daemonUID: 999)
        #expect(warnings.count == 1 && warnings.first?.message.contains("mode 0666") == true, "\(warnings)")
    }
}
