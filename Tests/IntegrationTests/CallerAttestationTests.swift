import Foundation
import Testing

/// Who may get which token, proven with real clients under other uids, gids, groups,
/// executables and cgroups against the real daemon: each rule kind grants its match
/// and denies everything else.
@Suite("Caller attestation and allow rules", .serialized)
struct CallerAttestationTests {
    /// uids and gids no account uses (setpriv needs no passwd entry).
    static let allowedUID: UInt32 = 4101
    static let otherUID: UInt32 = 4102
    static let allowedGID: UInt32 = 4201
    static let otherGID: UInt32 = 4202
    /// `nobody` and `staff` exist on Debian; rules name them.
    static let nobodyUID: UInt32 = 65534
    static let staffGID: UInt32 = 50

    @Test("uid, user, gid, group (supplementary), exe and any: each grants its match and denies others; no rules means root only")
    func credentialAndExecutableRules() async throws {
        var copiedCurl = ""
        try await Scenario.run(identities: { directory, provider in
            // A copy of curl at another path: same bytes, different executable.
            try FileManager.default.createDirectory(atPath: "\(directory)/bin", withIntermediateDirectories: true)
            copiedCurl = "\(directory)/bin/curl-allowed"
            try FileManager.default.copyItem(atPath: "/usr/bin/curl", toPath: copiedCurl)
            chmod("\(directory)/bin", 0o755)
            chmod(copiedCurl, 0o755)
            let file = provider.endpoints.tokenFile
            return [
                .init(name: "by-uid", tokenFile: file, allow: "[ { uid: \(Self.allowedUID) } ]"),
                .init(name: "by-user", tokenFile: file, allow: "[ { user: nobody } ]"),
                .init(name: "by-gid", tokenFile: file, allow: "[ { gid: \(Self.allowedGID) } ]"),
                .init(name: "by-group", tokenFile: file, allow: "[ { group: staff } ]"),
                .init(name: "by-exe", tokenFile: file, allow: "[ { exe: \(copiedCurl) } ]"),
                .init(name: "by-any", tokenFile: file, allow: "[ { any: true } ]"),
            ]
        }) { scenario in
            try OtherUser.openUp(scenario)
            let socket = scenario.broker.socketPath
            func token(
                _ identity: String, uid: UInt32, gid: UInt32? = nil, groups: [UInt32]? = nil, client: String = "/usr/bin/curl"
            ) async throws -> Reply {
                try await OtherUser.token(socket, identity: identity, uid: uid, gid: gid, groups: groups, client: client)
            }
            func expectGranted(_ reply: Reply, _ comment: Comment, sourceLocation: SourceLocation = #_sourceLocation) {
                #expect(reply.ok && reply.token?.hasPrefix("ey") == true, "\(comment): \(reply)", sourceLocation: sourceLocation)
            }
            func expectDenied(_ reply: Reply, _ identity: String, uid: UInt32, _ comment: Comment, sourceLocation: SourceLocation = #_sourceLocation)
            {
                #expect(reply.errorCode == "forbidden", "\(comment): \(reply)", sourceLocation: sourceLocation)
                #expect(reply.errorMessage.contains("uid \(uid)") && reply.errorMessage.contains("'\(identity)'"), sourceLocation: sourceLocation)
            }

            // uid
            expectGranted(try await token("by-uid", uid: Self.allowedUID), "uid rule, that uid")
            expectDenied(try await token("by-uid", uid: Self.otherUID), "by-uid", uid: Self.otherUID, "uid rule, another uid")
            // user (resolved to a uid at load)
            expectGranted(try await token("by-user", uid: Self.nobodyUID), "user rule, that user")
            expectDenied(try await token("by-user", uid: Self.otherUID), "by-user", uid: Self.otherUID, "user rule, another user")
            // gid: the primary group
            expectGranted(try await token("by-gid", uid: Self.otherUID, gid: Self.allowedGID), "gid rule, that primary gid")
            expectDenied(try await token("by-gid", uid: Self.otherUID, gid: Self.otherGID), "by-gid", uid: Self.otherUID, "gid rule, another gid")
            // group: a supplementary group counts (SO_PEERGROUPS), and so does one among many
            expectGranted(try await token("by-group", uid: Self.otherUID, groups: [Self.staffGID]), "group rule, supplementary")
            expectGranted(try await token("by-group", uid: Self.otherUID, groups: [4, 24, Self.staffGID, 4203, 4204]), "group rule, one of several")
            expectGranted(try await token("by-gid", uid: Self.otherUID, gid: Self.otherGID, groups: [Self.allowedGID]), "gid rule, supplementary")
            expectDenied(try await token("by-group", uid: Self.otherUID, groups: nil), "by-group", uid: Self.otherUID, "group rule, groups cleared")
            expectDenied(
                try await token("by-group", uid: Self.otherUID, groups: [4203, 4204]), "by-group", uid: Self.otherUID, "group rule, other groups")
            // exe: the copy is allowed, the original binary (same bytes) is not
            expectGranted(try await token("by-exe", uid: Self.otherUID, client: copiedCurl), "exe rule, that executable")
            expectDenied(try await token("by-exe", uid: Self.otherUID), "by-exe", uid: Self.otherUID, "exe rule, another executable")
            // any
            expectGranted(try await token("by-any", uid: Self.otherUID), "any")
            // no rules: root and the daemon's own user (root here) only
            expectDenied(try await token("default", uid: Self.otherUID), "default", uid: Self.otherUID, "no rules, another uid")
            #expect(try await scenario.broker.request(#"{"op":"token","identity":"default","scope":"\#(Scenario.scope)"}"#).ok, "no rules, root")

            // Without naming an identity, a caller allowed exactly one gets it, and
            // `status` lists only what the caller may use.
            let only = try await OtherUser.get(socket, "/v1/token?scope=\(Scenario.scope)", uid: Self.nobodyUID)
            #expect(only.errorCode == "identity_required", "nobody may use by-user and by-any: \(only)")
            let status = try await OtherUser.get(socket, "/v1/status", uid: Self.allowedUID)
            let names = ((status["status"] as? [String: Any])?["identities"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
            #expect(names == ["by-any", "by-uid"])

            // Denials never hint at identities the caller may not use; they list those it may.
            let denied = try await token("by-uid", uid: Self.otherUID)
            #expect(
                !denied.errorMessage.contains("by-user") && denied.errorMessage.contains("identities available to you: by-any"),
                "\(denied.errorMessage)")

            // One audit record per grant and per denial, with the attested executable.
            let log = scenario.broker.process.stderr
            #expect(log.contains("tokenbroker.audit"))
            #expect(log.contains("audit.outcome=granted") && log.contains("audit.outcome=denied"))
            #expect(log.contains("peer.exe=\(copiedCurl)"), "the grant to the copy names it")
            #expect(log.contains("peer.uid=\(Self.otherUID)"))
        }
    }

    @Test(
        "cgroup, systemdUnit and podUID: each grants its match and denies others",
        .enabled(if: CgroupSandbox.isAvailable, "needs a writable cgroup v2 mount (root)"))
    func cgroupRules() async throws {
        let sandbox = try CgroupSandbox()
        defer { sandbox.remove() }
        let pod = "9f0c9c36-6a7e-4b1f-9d2e-\(String(format: "%012x", UInt64.random(in: 0...0xffff_ffff_ffff)))"
        let otherPod = "11111111-2222-3333-4444-555555555555"
        // Units derive from the cgroup path as systemd does: slices, then the unit.
        let appUnit = "\(sandbox.name)-app.service"
        let otherUnit = "\(sandbox.name)-other.service"
        // The kubelet's systemd driver writes pod UIDs with underscores.
        let podSlice = "kubepods-burstable-pod\(pod.replacingOccurrences(of: "-", with: "_")).slice"
        let otherPodSlice = "kubepods-burstable-pod\(otherPod.replacingOccurrences(of: "-", with: "_")).slice"
        let app = try sandbox.directory(appUnit)
        let other = try sandbox.directory(otherUnit)
        let inPod = try sandbox.directory("\(podSlice)/cri-containerd-0123abcd.scope")
        let inOtherPod = try sandbox.directory("\(otherPodSlice)/cri-containerd-0123abcd.scope")
        // A user's manager with a unit of the same name as the system unit.
        let userUnit = try sandbox.directory("user-\(Self.otherUID).slice/user@\(Self.otherUID).service/app.slice/\(appUnit)")

        try await Scenario.run(identities: { _, provider in
            let file = provider.endpoints.tokenFile
            return [
                .init(name: "by-cgroup", tokenFile: file, allow: #"[ { cgroup: "\#(sandbox.path)/*.service" } ]"#),
                .init(name: "by-unit", tokenFile: file, allow: "[ { systemdUnit: \(appUnit) } ]"),
                .init(name: "by-user-unit", tokenFile: file, allow: #"[ { systemdUnit: "user@\#(Self.otherUID).service/\#(appUnit)" } ]"#),
                .init(name: "by-pod", tokenFile: file, allow: "[ { podUID: \(pod) } ]"),
            ]
        }) { scenario in
            try OtherUser.openUp(scenario)
            let socket = scenario.broker.socketPath
            func token(_ identity: String, in cgroup: String?) async throws -> Reply {
                try await OtherUser.token(socket, identity: identity, uid: Self.otherUID, cgroup: cgroup)
            }
            // cgroup glob: one component below the slice, ending in .service
            #expect(try await token("by-cgroup", in: app).ok)
            #expect(try await token("by-cgroup", in: other).ok)
            #expect(try await token("by-cgroup", in: inPod).errorCode == "forbidden", "a scope two levels down does not match */*.service")
            #expect(try await token("by-cgroup", in: nil).errorCode == "forbidden", "outside the slice")
            // systemdUnit
            #expect(try await token("by-unit", in: app).ok)
            #expect(try await token("by-unit", in: other).errorCode == "forbidden")
            #expect(try await token("by-unit", in: userUnit).errorCode == "forbidden", "a user unit of the same name is not the system unit")
            #expect(try await token("by-unit", in: nil).errorCode == "forbidden")
            #expect(try await token("by-user-unit", in: userUnit).ok)
            #expect(try await token("by-user-unit", in: app).errorCode == "forbidden")
            // podUID (written with dashes in the rule, underscores in the cgroup)
            #expect(try await token("by-pod", in: inPod).ok)
            #expect(try await token("by-pod", in: inOtherPod).errorCode == "forbidden")
            #expect(try await token("by-pod", in: app).errorCode == "forbidden")

            let log = scenario.broker.process.stderr
            #expect(log.contains("peer.cgroup=\(sandbox.path)/\(podSlice)/cri-containerd-0123abcd.scope"), "audit names the attested cgroup")
        }
    }
}
