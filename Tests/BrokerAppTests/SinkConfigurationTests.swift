import CoreFoundation  // owns `struct stat` where Foundation is imported (MemberImportVisibility)
import Foundation
import Glibc
import Testing
import TokenExchange

@testable import BrokerApp

/// `sinks:` as `check-config` reads it: every rule broken gets its own message and field.
@Suite struct SinkConfigurationTests {
    static let entra = "exchange: { entra: { tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47, clientId: 0f8c3e1a-5b7d-4a2e-9c61-3d2b1e4f5a6b } }"
    static let aws = "exchange: { awsSts: { roleArn: \"arn:aws:iam::123456789012:role/app\" } }"

    static func yaml(_ sinks: String, identities: [(String, String)] = [("storage", entra)]) -> String {
        var text = "identities:\n"
        for (name, exchange) in identities { text += "  - name: \(name)\n    source: { file: /var/run/token }\n    \(exchange)\n" }
        return text + "sinks:\n" + sinks
    }

    static func issues(_ yaml: String) -> [String] {
        do {
            _ = try ConfigurationLoader.load(yaml: yaml, origin: "config.yaml", environment: [:])
            return []
        } catch {
            return error.issues.map(\.description)
        }
    }

    /// A root-owned 0755 directory for paths that must pass the directory rules.
    static func directory() throws -> String {
        var template = Array("/tmp/tbsink-XXXXXX".utf8CString)
        let path = String(cString: try #require(mkdtemp(&template)))
        #expect(chmod(path, 0o755) == 0)
        return path
    }

    @Test("an identity left out is the only one giving that kind of token; AWS sinks take the role as scope")
    func identityResolution() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let both = [("storage", Self.entra), ("deploy", Self.aws)]
        let configuration = try ConfigurationLoader.load(
            yaml: Self.yaml(
                """
                  - { scope: "https://storage.azure.com/.default", path: \(directory)/a, format: header }
                  - { path: \(directory)/b, format: aws-credentials, mode: "0400", owner: "nobody:nogroup" }
                  - { path: \(directory)/c, format: env, onRotate: { signal: hup, pidFile: /run/app.pid } }
                """, identities: both), origin: "config.yaml", environment: [:])
        #expect(configuration.sinks.map(\.identity) == ["storage", "deploy", "deploy"])
        #expect(configuration.sinks[1].scope == Scope("arn:aws:iam::123456789012:role/app") && configuration.sinks[1].mode == 0o400)
        #expect(configuration.sinks[0].mode == 0o440 && configuration.sinks[0].owner == nil, "defaults")
        #expect(configuration.sinks[2].onRotate == .signal(name: "HUP", pidFile: "/run/app.pid"))
    }

    @Test(
        "each broken rule is named with its field",
        arguments: [
            ("{ identity: storage, scope: s, path: relative/token }", "sinks[0].path", "must be an absolute path"),
            ("{ identity: nope, scope: s, path: DIR/t }", "sinks[0].identity", "no identity 'nope' is defined; identities: storage, deploy"),
            ("{ identity: storage, path: DIR/t }", "sinks[0].scope", "is required: identity 'storage' gives access tokens"),
            ("{ identity: deploy, path: DIR/t }", "sinks[0].format", "gives AWS credentials, not an access token"),
            ("{ identity: storage, scope: s, path: DIR/t, format: aws-credentials }", "sinks[0].format", "gives access tokens, not AWS credentials"),
            (
                "{ identity: storage, scope: s, path: DIR/t, format: yaml }", "sinks[0].format",
                "must be one of token, json, header, aws-credentials, env"
            ),
            ("{ identity: storage, scope: s, path: DIR/t, owner: no-such-user-here }", "sinks[0].owner", "no such user 'no-such-user-here'"),
            ("{ identity: storage, scope: s, path: DIR/t, owner: \"root:no-such-group\" }", "sinks[0].owner", "no such group 'no-such-group'"),
            ("{ identity: storage, scope: s, path: DIR/t, mode: \"0444\" }", "sinks[0].mode", "gives others access"),
            ("{ identity: storage, scope: s, path: DIR/t, mode: \"0540\" }", "sinks[0].mode", "gives others access or someone execute"),
            ("{ identity: storage, scope: s, path: DIR/t, mode: \"rw\" }", "sinks[0].mode", "must be octal permission bits"),
            ("{ identity: storage, scope: s, path: DIR/t, onRotate: { command: [] } }", "sinks[0].onRotate.command", "is empty"),
            (
                "{ identity: storage, scope: s, path: DIR/t, onRotate: { command: [systemctl, reload, app] } }", "sinks[0].onRotate.command",
                "is not an absolute path"
            ),
            (
                "{ identity: storage, scope: s, path: DIR/t, onRotate: { signal: KILL, pidFile: /run/a.pid } }", "sinks[0].onRotate.signal",
                "must be one of HUP, USR1, USR2"
            ),
            ("{ identity: storage, scope: s, path: DIR/t, onRotate: { signal: HUP } }", "sinks[0].onRotate.pidFile", "is required"),
            ("{ scope: s, path: DIR/t }", "sinks[0].identity", "is required: several identities give access tokens (storage, other)"),
        ])
    func refused(_ sink: String, _ field: String, _ message: String) throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let identities =
            sink.hasPrefix("{ scope") ? [("storage", Self.entra), ("other", Self.entra)] : [("storage", Self.entra), ("deploy", Self.aws)]
        let found = Self.issues(Self.yaml("  - " + sink.replacingOccurrences(of: "DIR", with: directory) + "\n", identities: identities))
        #expect(found.contains { $0.hasPrefix(field) && $0.contains(message) }, "\(found)")
    }

    @Test("two sinks on one path are refused")
    func duplicatePath() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let found = Self.issues(Self.yaml("  - { scope: s, path: \(directory)/t }\n  - { scope: u, path: \(directory)/t }\n"))
        #expect(found.contains { $0.hasPrefix("sinks[1].path") && $0.contains("is the path of an earlier sink") }, "\(found)")
    }
}

/// The file writer's rules, on real files.
@Suite struct SinkFileTests {
    @Test("a write replaces the file with a new inode, with the exact mode and owner, and leaves no temporary file")
    func atomicReplace() throws {
        let directory = try SinkConfigurationTests.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/token"
        let nobody = try #require(getpwnam("nobody")).pointee.pw_uid
        let nogroup = try #require(getgrnam("nogroup")).pointee.gr_gid
        let first = try SinkFile.write(Array("one".utf8), to: path, mode: 0o440, uid: nobody, gid: nogroup)
        let second = try SinkFile.write(Array("two".utf8), to: path, mode: 0o600, uid: 0, gid: 0)
        #expect(first != second, "a new file each time: a reader holding the old one keeps reading it whole")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "two")
        var info = Glibc.stat()
        #expect(lstat(path, &info) == 0 && info.st_mode & 0o7777 == 0o600 && info.st_uid == 0)
        #expect(SinkFile.holds(Array("two".utf8), at: path, mode: 0o600, uid: 0, gid: 0)?.written == second)
        #expect(SinkFile.holds(Array("two".utf8), at: path, mode: 0o440, uid: 0, gid: 0) == nil, "another mode is not 'already right'")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["token"])
        #expect(!SinkFile.remove(path, ifStill: first), "a file it no longer wrote is left alone")
        #expect(SinkFile.remove(path, ifStill: second) && !FileManager.default.fileExists(atPath: path))
    }

    @Test("a symlink at the path is refused and its target untouched")
    func symlinkRefused() throws {
        let directory = try SinkConfigurationTests.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "mine".write(toFile: "\(directory)/target", atomically: false, encoding: .utf8)
        #expect(symlink("\(directory)/target", "\(directory)/token") == 0)
        #expect(throws: SinkError.self) { try SinkFile.write(Array("x".utf8), to: "\(directory)/token", mode: 0o440, uid: 0, gid: 0) }
        #expect(SinkPathSafety.problem("\(directory)/token")?.code == .symlink)
        #expect(try String(contentsOfFile: "\(directory)/target", encoding: .utf8) == "mine")
    }

    @Test("a directory others can write, or one another user owns, is refused; a sticky /tmp above is fine")
    func directoryRules() throws {
        let directory = try SinkConfigurationTests.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(SinkPathSafety.problem("\(directory)/token") == nil)
        #expect(chmod(directory, 0o1777) == 0)
        #expect(SinkPathSafety.problem("\(directory)/token")?.code == .unsafeDirectory, "even with the sticky bit")
        #expect(chmod(directory, 0o755) == 0)
        #expect(chown(directory, try #require(getpwnam("nobody")).pointee.pw_uid, 0) == 0)
        #expect(SinkPathSafety.problem("\(directory)/token")?.message.contains("is owned by uid") == true)
        #expect(SinkPathSafety.problem("\(directory)/missing/token")?.code == .directoryMissing)
    }
}
