import BrokerServer
import Glibc

/// Who may use an identity, decided from what the kernel attested about the caller
/// when it connected. An attribute the broker could not attest (nil) matches no rule.
struct AccessPolicy: Sendable, Equatable {
    /// The identity's `allow:` rules.
    var rules: [AllowRule]
    /// The daemon's own uid (allowed, with root, when there are no rules).
    var daemonUID: UInt32

    /// Whether `peer` may use the identity.
    func allows(_ peer: PeerCredentials) -> Bool {
        if rules.isEmpty { return peer.uid == 0 || peer.uid == daemonUID }
        return rules.contains { Self.matches($0, peer) }
    }

    static func matches(_ rule: AllowRule, _ peer: PeerCredentials) -> Bool {
        switch rule {
        case .any:
            return true
        case .uid(let uid):
            return peer.uid == uid
        case .gid(let gid):
            return peer.gid == gid || (peer.supplementaryGroups?.contains(gid) ?? false)
        case .exe(let path):
            return peer.executable == path
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
