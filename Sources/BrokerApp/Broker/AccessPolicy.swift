import BrokerServer
import Glibc

/// Who may use an identity, decided from what the kernel attested about the caller
/// when it connected. An attribute the broker could not attest (nil) matches no rule.
struct AccessPolicy: Sendable, Equatable {
    /// The identity's `allow:` rules; one that matches admits the caller.
    var rules: [AllowRule]
    /// The daemon's own uid (allowed, with root, when there are no rules).
    var daemonUID: UInt32
    /// What each `exe` rule's path named when the policy was made (at load and reload):
    /// the file a caller's executable must be.
    var executables: [String: FileIdentity]

    init(rules: [AllowRule], daemonUID: UInt32) {
        self.rules = rules
        self.daemonUID = daemonUID
        var executables: [String: FileIdentity] = [:]
        for path in rules.flatMap(\.executablePaths) { executables[path] = FileIdentity(path: path) }
        self.executables = executables
    }

    /// Whether `peer` may use the identity.
    func allows(_ peer: PeerCredentials) -> Bool {
        if rules.isEmpty { return peer.uid == 0 || peer.uid == daemonUID }
        return rules.contains { matches($0, peer) }
    }

    func matches(_ rule: AllowRule, _ peer: PeerCredentials) -> Bool {
        switch rule {
        case .any:
            return true
        case .all(let rules):
            return rules.allSatisfy { matches($0, peer) }
        case .uid(let uid):
            return peer.uid == uid
        case .gid(let gid):
            return peer.gid == gid || (peer.supplementaryGroups?.contains(gid) ?? false)
        case .exe(let path):
            // The file, not its name: in its own mount namespace a caller can make any path
            // name its own interpreter, but not give that interpreter the allowed file's
            // device and inode. A file replaced since load (an upgrade) is looked up again.
            guard let file = peer.executableFile else { return false }
            return executables[path] == file || FileIdentity(path: path) == file
        case .cgroup(let glob):
            guard let cgroup = peer.cgroup else { return false }
            return fnmatch(glob, cgroup, FNM_PATHNAME) == 0
        case .systemdUnit(let unit):
            guard let system = peer.systemdUnit else { return false }
            if unit == system { return true }
            guard let user = peer.systemdUserUnit else { return false }
            // `user@1000.service/app.service`, without building a string per request.
            return unit.utf8.count == system.utf8.count + 1 + user.utf8.count
                && unit.hasPrefix(system) && unit.hasSuffix(user) && unit.utf8.dropFirst(system.utf8.count).first == UInt8(ascii: "/")
        case .podUID(let uid):
            return peer.podUID == uid
        }
    }
}

extension AllowRule {
    /// The paths of the `exe` rules in this rule (inside `all` too).
    var executablePaths: [String] {
        switch self {
        case .exe(let path): return [path]
        case .all(let rules): return rules.flatMap(\.executablePaths)
        default: return []
        }
    }
}
