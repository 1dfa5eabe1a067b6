import Glibc
import Synchronization

/// `owner: user[:group]` resolved to ids: names through the system's user and group
/// databases, numbers as they are. No owner: the daemon's user and group.
enum SinkOwner {
    /// The uid and gid `owner` names, or why it names none.
    static func resolve(_ owner: String?) -> Result<(uid: uid_t, gid: gid_t), SinkError> {
        guard let owner else { return .success((getuid(), getgid())) }
        // getpwnam and getgrnam return static buffers: one lookup at a time in this process.
        return lock.withLock { _ in lookUp(owner) }
    }

    private static let lock = Mutex(())

    private static func lookUp(_ owner: String) -> Result<(uid: uid_t, gid: gid_t), SinkError> {
        let parts = owner.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let user = parts[0]
        guard !user.isEmpty else { return .failure(SinkError(.unknownOwner, "owner '\(owner)' names no user; write user or user:group")) }
        let uid: uid_t
        let primaryGroup: gid_t?
        if let number = UInt32(user) {
            uid = number
            primaryGroup = getpwuid(number).map { $0.pointee.pw_gid }
        } else if let entry = getpwnam(user) {
            uid = entry.pointee.pw_uid
            primaryGroup = entry.pointee.pw_gid
        } else {
            return .failure(SinkError(.unknownOwner, "no such user '\(user)'"))
        }
        guard parts.count == 2 else {
            guard let primaryGroup else {
                return .failure(SinkError(.unknownOwner, "uid \(uid) has no entry in the user database; name its group as \(uid):GROUP"))
            }
            return .success((uid, primaryGroup))
        }
        let group = parts[1]
        if let number = UInt32(group) { return .success((uid, number)) }
        guard !group.isEmpty, let entry = getgrnam(group) else { return .failure(SinkError(.unknownOwner, "no such group '\(group)'")) }
        return .success((uid, entry.pointee.gr_gid))
    }
}
