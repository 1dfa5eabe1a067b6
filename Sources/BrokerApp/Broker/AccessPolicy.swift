import BrokerServer
import Glibc

/// Who may use an identity, decided from the caller's kernel-attested credentials.
struct AccessPolicy: Sendable, Equatable {
    /// The identity's `allow:` rules.
    var rules: [AllowRule]
    /// The daemon's own uid (allowed, with root, when there are no rules).
    var daemonUID: UInt32

    /// Whether `peer` may use the identity. `groups` is read only when a rule needs
    /// supplementary groups.
    func allows(_ peer: PeerCredentials, supplementaryGroups groups: () -> [UInt32]) -> Bool {
        if rules.isEmpty { return peer.uid == 0 || peer.uid == daemonUID }
        for rule in rules {
            switch rule {
            case .any: return true
            case .uid(let uid): if peer.uid == uid { return true }
            case .gid(let gid): if peer.gid == gid || groups().contains(gid) { return true }
            }
        }
        return false
    }
}

/// What `/proc` says about a peer process.
enum ProcessInfo {
    /// Supplementary groups of `pid` from `/proc/PID/status` (`Groups:` line); empty when unreadable.
    static func supplementaryGroups(of pid: Int32) -> [UInt32] {
        guard pid > 0, let status = FileText.read("/proc/\(pid)/status", limit: 64 * 1024) else { return [] }
        for line in status.split(separator: "\n") where line.hasPrefix("Groups:") {
            return line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) }
        }
        return []
    }
}
