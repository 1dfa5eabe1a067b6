import BrokerServer
import Foundation
import Testing

@testable import BrokerApp

private let head = """
    identities:
      - name: x
        source: { file: /t }
        exchange: { entra: { tenantId: t, clientId: c } }

    """

private func rules(_ allow: String) throws(ConfigurationError) -> [AllowRule] {
    try ConfigurationLoader.load(yaml: head + "    allow: \(allow)\n", origin: "config.yaml", environment: [:]).identities[0].allow
}

private func problems(_ allow: String) -> [ConfigurationError.Issue] {
    do {
        _ = try rules(allow)
        Issue.record("loaded but should not have")
        return []
    } catch {
        return error.issues
    }
}

/// The `allow:` rule kinds as configuration reads them.
@Suite("Allow rules in configuration")
struct AllowRuleConfigurationTests {
    @Test("every kind is read; names and paths are resolved once, at load")
    func everyKind() throws {
        let read = try rules(
            """
            [ { uid: 1000 }, { user: root }, { gid: 10 }, { group: root }, { exe: /usr/bin/env }, { cgroup: "/kubepods.slice/*/*/*.scope" },
              { systemdUnit: app.service }, { systemdUnit: "user@1000.service/app.service" },
              { podUID: 9F0C9C36_6A7E_4B1F_9D2E_0123456789AB }, { any: false }, { any: true } ]
            """)
        let env = try #require(
            realpath("/usr/bin/env", nil).map { pointer in
                defer { free(pointer) }; return String(cString: pointer)
            })
        #expect(
            read == [
                .uid(1000), .uid(0), .gid(10), .gid(0), .exe(env), .cgroup("/kubepods.slice/*/*/*.scope"),
                .systemdUnit("app.service"), .systemdUnit("user@1000.service/app.service"),
                .podUID("9f0c9c36-6a7e-4b1f-9d2e-0123456789ab"), .any,
            ])
    }

    @Test("all: every listed rule, read like the list itself")
    func allOf() throws {
        let env = try #require(
            realpath("/usr/bin/env", nil).map { pointer in
                defer { free(pointer) }; return String(cString: pointer)
            })
        #expect(try rules("[ { all: [ { uid: 1000 }, { exe: /usr/bin/env } ] }, { uid: 0 } ]") == [.all([.uid(1000), .exe(env)]), .uid(0)])
    }

    @Test("an executable path that is a symlink becomes its target, as the kernel reports it")
    func exeSymlinksResolve() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tb-exe-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createSymbolicLink(atPath: "\(directory)/link", withDestinationPath: "/bin/sh")
        let target = try #require(
            realpath("/bin/sh", nil).map { pointer in
                defer { free(pointer) }; return String(cString: pointer)
            })
        #expect(try rules("[ { exe: \(directory)/link } ]") == [.exe(target)])
        #expect(try rules("[ { exe: /opt/not-installed-yet/app } ]") == [.exe("/opt/not-installed-yet/app")])
    }

    @Test(
        "each bad rule is reported with its field path and line",
        arguments: [
            ("[ { exe: bin/app } ]", "identities[0].allow[0].exe", "absolute path"),
            ("[ { cgroup: system.slice/x.service } ]", "identities[0].allow[0].cgroup", "absolute cgroup path"),
            ("[ { systemdUnit: app } ]", "identities[0].allow[0].systemdUnit", "unit name"),
            ("[ { systemdUnit: system.slice } ]", "identities[0].allow[0].systemdUnit", "unit name"),
            ("[ { systemdUnit: \"user@bob.service/app.service\" } ]", "identities[0].allow[0].systemdUnit", "user@UID.service"),
            ("[ { systemdUnit: \"a/b/c.service\" } ]", "identities[0].allow[0].systemdUnit", "unit name"),
            ("[ { podUID: 1234 } ]", "identities[0].allow[0].podUID", "pod UID"),
            ("[ { podUID: 9f0c9c36-6a7e_4b1f-9d2e-0123456789ab } ]", "identities[0].allow[0].podUID", "pod UID"),
            (
                "[ { exe: /a, cgroup: /b } ]", "identities[0].allow[0]",
                "exactly one of uid, user, gid, group, exe, cgroup, systemdUnit, podUID, any, all"
            ),
            ("[ { all: [ { uid: 1 } ] } ]", "identities[0].allow[0].all", "at least two rules"),
            ("[ { all: [ { uid: 1 }, { any: true } ] } ]", "identities[0].allow[0].all[1]", "'any' cannot be part of 'all'"),
            ("[ { all: [ { uid: 1 }, { all: [ { uid: 2 }, { gid: 3 } ] } ] } ]", "identities[0].allow[0].all[1]", "'all' cannot be part of 'all'"),
            ("[ { all: [ { uid: 1 }, { exe: bin/app } ] } ]", "identities[0].allow[0].all[1].exe", "absolute path"),
            ("[ { all: { uid: 1 } } ]", "identities[0].allow[0].all", "must be a list"),
            ("[ { exe: [ /a ] } ]", "identities[0].allow[0].exe", "must be a string"),
            ("[ { pid: 1 } ]", "identities[0].allow[0].pid", "unknown field"),
        ])
    func badRules(allow: String, path: String, message: String) {
        let found = problems(allow)
        #expect(found.contains { $0.path == path && $0.message.contains(message) && $0.line == 5 }, "\(found)")
    }

    @Test("limits are read and checked")
    func limits() throws {
        let configuration = try ConfigurationLoader.load(
            yaml: "limits: { maxConnectionsPerUID: 4, requestsPerSecondPerUID: 0, requestBurstPerUID: 7 }\n", origin: "c", environment: [:])
        #expect(configuration.limits.maxConnectionsPerUID == 4)
        #expect(configuration.limits.requestsPerSecondPerUID == 0)
        #expect(configuration.limits.requestBurstPerUID == 7)
        #expect(BrokerConfiguration().limits.maxConnectionsPerUID == 128)
        do {
            _ = try ConfigurationLoader.load(
                yaml: "limits:\n  maxConnectionsPerUID: 0\n  requestBurstPerUID: -1\n  perUID: 3\n", origin: "c", environment: [:])
            Issue.record("loaded")
        } catch {
            #expect(error.issues.map(\.path) == ["limits.maxConnectionsPerUID", "limits.requestBurstPerUID", "limits.perUID"])
        }
    }
}

/// Matching rules against what the kernel attested. A peer built here is what
/// `PeerAttestation` produces; an attribute it could not attest is nil.
@Suite("Access policy")
struct AccessPolicyTests {
    static let pod = "9f0c9c36-6a7e-4b1f-9d2e-0123456789ab"
    static let podCgroup =
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod9f0c9c36_6a7e_4b1f_9d2e_0123456789ab.slice/cri-containerd-4f1e.scope"
    /// Two real files stand in for executables: `exe` rules compare device and inode.
    static let app = resolved("/usr/bin/env")
    static let otherApp = resolved("/usr/bin/ls")
    static let full = PeerCredentials(
        pid: 4242, uid: 1000, gid: 1000, supplementaryGroups: [27, 44], executable: app, executableFile: FileIdentity(path: app),
        cgroup: "/user.slice/user-1000.slice/user@1000.service/app.slice/app.service")

    static func resolved(_ path: String) -> String {
        realpath(path, nil).map { pointer in
            defer { free(pointer) }; return String(cString: pointer)
        } ?? path
    }
    /// The same uid and gid with nothing else known (a TCP peer, a process gone before it was read).
    static let bare = PeerCredentials(pid: 4242, uid: 1000, gid: 1000)

    private func allows(_ rules: [AllowRule], _ peer: PeerCredentials) -> Bool {
        AccessPolicy(rules: rules, daemonUID: 999).allows(peer)
    }

    @Test("without rules: root and the daemon's own uid only")
    func defaults() {
        #expect(allows([], PeerCredentials(pid: 1, uid: 0, gid: 0)))
        #expect(allows([], PeerCredentials(pid: 1, uid: 999, gid: 5)))
        #expect(!allows([], Self.full))
        #expect(!allows([], .unknown))
    }

    @Test(
        "each kind grants on its attribute and denies on another value",
        arguments: [
            (AllowRule.uid(1000), AllowRule.uid(1001)),
            (.gid(1000), .gid(1001)),
            (.gid(44), .gid(45)),  // supplementary
            (.exe(AccessPolicyTests.app), .exe(AccessPolicyTests.otherApp)),
            (.all([.uid(1000), .exe(AccessPolicyTests.app)]), .all([.uid(1000), .exe(AccessPolicyTests.otherApp)])),
            (.all([.gid(44), .uid(1000)]), .all([.gid(44), .uid(1001)])),
            (.cgroup("/user.slice/*/user@1000.service/app.slice/*.service"), .cgroup("/user.slice/*/app.service")),
            (.systemdUnit("user@1000.service"), .systemdUnit("app.service")),
            (.systemdUnit("user@1000.service/app.service"), .systemdUnit("user@1001.service/app.service")),
            (.any, .uid(7)),
        ])
    func grantAndDeny(grant: AllowRule, deny: AllowRule) {
        #expect(allows([grant], Self.full))
        #expect(!allows([deny], Self.full))
        #expect(allows([deny, grant], Self.full), "any rule admits")
    }

    @Test("exe compares the file, not the path: a peer whose exe path names the allowed file but is another file is refused")
    func executableIsTheFileNotThePath() {
        // What a caller sees in its own mount namespace after a bind mount over the path.
        let lying = PeerCredentials(pid: 1, uid: 1000, gid: 1000, executable: Self.app, executableFile: FileIdentity(path: Self.otherApp))
        #expect(!allows([.exe(Self.app)], lying))
        // A hard link or another name for the same file is the same executable.
        let renamed = PeerCredentials(pid: 1, uid: 1000, gid: 1000, executable: "/elsewhere/app", executableFile: FileIdentity(path: Self.app))
        #expect(allows([.exe(Self.app)], renamed))
    }

    @Test("a user unit never matches a system-unit rule of the same name")
    func userUnitIsNotASystemUnit() {
        #expect(!allows([.systemdUnit("app.service")], Self.full))
        let system = PeerCredentials(pid: 1, uid: 0, gid: 0, cgroup: "/system.slice/app.service")
        #expect(allows([.systemdUnit("app.service")], system))
        #expect(!allows([.systemdUnit("user@0.service/app.service")], system))
    }

    @Test("pod UID rules match the pod from either cgroup driver")
    func podUID() {
        let systemd = PeerCredentials(pid: 1, uid: 0, gid: 0, cgroup: Self.podCgroup)
        let cgroupfs = PeerCredentials(pid: 1, uid: 0, gid: 0, cgroup: "/kubepods/burstable/pod\(Self.pod)/4f1e")
        #expect(allows([.podUID(Self.pod)], systemd))
        #expect(allows([.podUID(Self.pod)], cgroupfs))
        #expect(!allows([.podUID("11111111-2222-3333-4444-555555555555")], systemd))
    }

    @Test("cgroup globs do not cross '/'")
    func globsStayInOneComponent() {
        let peer = PeerCredentials(pid: 1, uid: 0, gid: 0, cgroup: Self.podCgroup)
        #expect(allows([.cgroup("/kubepods.slice/*/*/*.scope")], peer))
        #expect(!allows([.cgroup("/kubepods.slice/*.scope")], peer))
        #expect(!allows([.cgroup("/kubepods.slice/*")], peer))
        #expect(allows([.cgroup("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod*.slice/cri-containerd-[0-9a-f]*.scope")], peer))
    }

    @Test(
        "absent attributes match no rule",
        arguments: [
            AllowRule.gid(44), .exe("/usr/bin/app"), .cgroup("/*"), .cgroup("*"), .systemdUnit("user@1000.service"), .podUID(AccessPolicyTests.pod),
        ])
    func absentAttributes(rule: AllowRule) {
        #expect(!allows([rule], Self.bare))
        #expect(!allows([rule], .unknown))
    }

    @Test("an unknown uid and gid match no number")
    func unknownPeer() {
        #expect(!allows([.uid(0), .gid(0), .uid(UInt32.max - 1)], .unknown))
        #expect(allows([.any], .unknown))
    }
}
