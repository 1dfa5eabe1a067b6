import Foundation
import Testing

/// `exe` rules against a caller who controls its own user and mount namespaces, and
/// all-of rules that narrow a uid grant to one executable.
@Suite("Executable rules under attack", .serialized)
struct ExecutableRuleAttackTests {
    static let allowedUID: UInt32 = 4111
    static let otherUID: UInt32 = 4112

    /// A copy of curl at a path of the scenario's: the allowed executable.
    static func allowedCopy(in directory: String) throws -> String {
        try FileManager.default.createDirectory(atPath: "\(directory)/bin", withIntermediateDirectories: true)
        let copy = "\(directory)/bin/app"
        try FileManager.default.copyItem(atPath: "/usr/bin/curl", toPath: copy)
        chmod("\(directory)/bin", 0o755)
        chmod(copy, 0o755)
        return copy
    }

    @Test("a caller that bind-mounts its own binary over the allowed path in a user namespace is refused; the real file is granted")
    func bindMountOverTheAllowedPath() async throws {
        var app = ""
        try await Scenario.run(identities: { directory, provider in
            app = try Self.allowedCopy(in: directory)
            return [.init(name: "by-exe", tokenFile: provider.endpoints.tokenFile, allow: "[ { exe: \(app) } ]")]
        }) { scenario in
            try OtherUser.openUp(scenario)
            let url = "http://localhost/v1/token?scope=\(Scenario.scope)&identity=by-exe"
            let granted = try await OtherUser.run(
                [app, "-s", "--unix-socket", scenario.broker.socketPath, url], uid: Self.otherUID, gid: Self.otherUID, groups: nil)
            #expect(try Reply(granted.stdout).ok, "the allowed file itself: \(granted.stdout)")

            // In its own user and mount namespace the caller makes the allowed path name
            // /usr/bin/curl, then execs that path: /proc/PID/exe reads the allowed path.
            let script = #"mount --bind /usr/bin/curl "$0" && exec "$0" -s --unix-socket "$1" "$2""#
            let attack = try await OtherUser.run(
                ["/usr/bin/unshare", "-Urm", "/bin/sh", "-c", script, app, scenario.broker.socketPath, url], uid: Self.otherUID, gid: Self.otherUID,
                groups: nil)
            let reply = try Reply(attack.stdout)
            #expect(reply.errorCode == "forbidden", "a bind mount must not make another binary the allowed one: \(attack.stdout) \(attack.stderr)")
            #expect(reply.token == nil)
        }
    }

    @Test("all-of rules: a uid AND an executable; either alone is refused")
    func allOfRules() async throws {
        var app = ""
        try await Scenario.run(identities: { directory, provider in
            app = try Self.allowedCopy(in: directory)
            return [
                .init(name: "narrow", tokenFile: provider.endpoints.tokenFile, allow: "[ { all: [ { uid: \(Self.allowedUID) }, { exe: \(app) } ] } ]")
            ]
        }) { scenario in
            try OtherUser.openUp(scenario)
            let socket = scenario.broker.socketPath
            #expect(try await OtherUser.token(socket, identity: "narrow", uid: Self.allowedUID, client: app).ok, "that uid with that executable")
            #expect(
                try await OtherUser.token(socket, identity: "narrow", uid: Self.allowedUID).errorCode == "forbidden", "that uid, another executable")
            #expect(
                try await OtherUser.token(socket, identity: "narrow", uid: Self.otherUID, client: app).errorCode == "forbidden",
                "that executable, another uid")
        }
    }
}
