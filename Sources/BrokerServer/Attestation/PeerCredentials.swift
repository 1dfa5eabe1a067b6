import Glibc

/// The process on the other end of a connection, as the kernel describes it.
///
/// `pid`, `uid` and `gid` come from `SO_PEERCRED` on the Unix socket. Every other
/// attribute is optional: nil means "not known" — the kernel did not say, `/proc` could
/// not be read, the process exited or could not be shown to be the one that connected,
/// or the listener has no way to know (a TCP peer). Authorization treats an absent
/// attribute as matching no rule.
public struct PeerCredentials: Sendable, Hashable, CustomStringConvertible {
    /// Process ID at connect time, in the broker's PID namespace (0: not known).
    public var pid: Int32
    /// Effective user ID (`UInt32.max`: not known).
    public var uid: UInt32
    /// Effective group ID (`UInt32.max`: not known).
    public var gid: UInt32
    /// Supplementary groups at connect time (`SO_PEERGROUPS`), nil when not known.
    public var supplementaryGroups: [UInt32]?
    /// The executable, from `/proc/PID/exe` (the kernel's path; a replaced binary ends
    /// in ` (deleted)`), nil when not known.
    public var executable: String?
    /// Device and inode of the executable (`stat` of `/proc/PID/exe`), nil when not known.
    /// `exe` rules compare this, not the path: a path can be made to lie.
    public var executableFile: FileIdentity?
    /// The cgroup path from `/proc/PID/cgroup`: the unified (v2) hierarchy, or systemd's
    /// v1 hierarchy on hybrid hosts. Nil when not known.
    public private(set) var cgroup: String?
    /// The systemd unit the cgroup path names (`/system.slice/foo.service` → `foo.service`;
    /// a user manager's processes → `user@1000.service`), nil when there is none.
    public private(set) var systemdUnit: String?
    /// The unit inside a user manager (`…/user@1000.service/app.slice/foo.service` →
    /// `foo.service`), nil when the process is not under one.
    public private(set) var systemdUserUnit: String?
    /// The Kubernetes pod UID from a `…pod<uid>…` cgroup segment, lowercase with dashes.
    public private(set) var podUID: String?
    /// The variables of `/proc/PID/environ` the server was asked to read
    /// (`attestedEnvironment`, node mode's `callerEnvironment`), nil when not read.
    public var environment: [String: String]?

    /// Creates credentials; the systemd unit and pod UID are derived from `cgroup`.
    public init(
        pid: Int32, uid: UInt32, gid: UInt32, supplementaryGroups: [UInt32]? = nil, executable: String? = nil, executableFile: FileIdentity? = nil,
        cgroup: String? = nil
    ) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.supplementaryGroups = supplementaryGroups
        self.executable = executable
        self.executableFile = executableFile
        self.cgroup = cgroup
        if let cgroup {
            let units = CgroupPath.systemdUnits(in: cgroup)
            systemdUnit = units.unit
            systemdUserUnit = units.userUnit
            podUID = CgroupPath.podUID(in: cgroup)
        }
    }

    /// A peer nothing is known about: it matches no allow rule but `any`.
    public static let unknown = PeerCredentials(pid: 0, uid: UInt32.max, gid: UInt32.max)

    public var description: String { "uid=\(uid) gid=\(gid) pid=\(pid)" }

    /// A pod UID as `podUID` reports it (lowercase, dashes) from one written with dashes
    /// or underscores, or nil if `text` is not a pod UID.
    public static func normalisedPodUID(_ text: String) -> String? {
        CgroupPath.normalisedUID(text[...])
    }

    /// Whether `name` can be a `systemdUnit` (`foo.service`, `session-2.scope`, …).
    public static func isSystemdUnitName(_ name: String) -> Bool {
        CgroupPath.isUnitName(name[...])
    }
}

/// A file as the kernel names it: device and inode. Two paths with the same identity are
/// the same file, whatever mount namespace or bind mount each was seen through.
public struct FileIdentity: Sendable, Hashable {
    /// `st_dev`.
    public var device: UInt64
    /// `st_ino`.
    public var inode: UInt64

    /// An identity from its two numbers.
    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    /// The identity of what `path` names now (symlinks followed), nil if it cannot be
    /// stat'ed or is not a regular file.
    public init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        self.init(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }
}
