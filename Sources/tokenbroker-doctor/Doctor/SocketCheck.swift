import BrokerClient
import Glibc

/// The broker's socket: that it exists and is a socket, who may connect to it (mode,
/// owner, group), and whether this user can: a real `connect(2)`, which is what the
/// kernel decides on (write permission on the socket, search permission on its directories).
struct SocketCheck: DoctorCheck {
    func run(_ context: DoctorContext) -> [DoctorFinding] {
        let path = context.socketPath
        var info = stat()
        guard lstat(path, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            return [
                .fail(
                    "socket.exists", "\(path): \(reason)",
                    fix:
                        "start the broker (systemctl enable --now tokenbroker.socket, or the sidecar), mount its socket directory here, or set TOKENBROKER_SOCKET / --socket"
                )
            ]
        }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            return [
                .fail(
                    "socket.exists", "\(path) exists but is not a socket",
                    fix: "point TOKENBROKER_SOCKET / --socket at the broker's socket (socket.path in its configuration)")
            ]
        }
        let who = Self.describe(info)
        let errorNumber = Self.connectError(path)
        return [.pass("socket.exists", "\(path) (\(who))"), Self.evaluate(connectError: errorNumber, socket: info, path: path)]
    }

    /// The verdict on a `connect(2)` that ended with `connectError` (0: connected).
    static func evaluate(connectError: Int32, socket info: stat, path: String) -> DoctorFinding {
        let me =
            "uid \(getuid()) (\(userName(getuid()).map { "\($0), " } ?? "")groups \(groups().map { groupName($0) ?? String($0) }.joined(separator: ",")))"
        switch connectError {
        case 0:
            return .pass("socket.access", "\(me) can connect")
        case EACCES, EPERM:
            let group = groupName(info.st_gid) ?? String(info.st_gid)
            let groupCanConnect = info.st_mode & 0o020 != 0
            let fix =
                groupCanConnect
                ? "join group \(group) (usermod -aG \(group) <user>, then log in again), or run as the socket's owner \(userName(info.st_uid) ?? String(info.st_uid))"
                : "the socket is writable by its owner only: make it 0660 with a group you are in (socket.mode/socket.group, or SocketMode=/SocketGroup= in tokenbroker.socket)"
            return .fail(
                "socket.access",
                "\(me) may not connect: \(String(cString: strerror(connectError))) (socket \(describe(info)); connecting needs write permission)",
                fix: fix)
        case ECONNREFUSED:
            return .fail(
                "socket.access", "connection refused: nothing listens on \(path) (a stale socket file)",
                fix: "start the broker (systemctl start tokenbroker.socket) or remove the stale file")
        default:
            return .fail(
                "socket.access", "cannot connect: \(String(cString: strerror(connectError)))",
                fix: "check that the broker is running and serving this path")
        }
    }

    /// `srw-rw---- root:tokenbroker`.
    static func describe(_ info: stat) -> String {
        let mode = Int(info.st_mode & 0o777)
        let letters = (0..<9).map { bit in mode & (0o400 >> bit) != 0 ? Array("rwxrwxrwx")[bit] : "-" }
        return "s\(String(letters)) \(userName(info.st_uid) ?? String(info.st_uid)):\(groupName(info.st_gid) ?? String(info.st_gid))"
    }

    /// 0 when a connection succeeds (it is closed at once), else the errno.
    static func connectError(_ path: String) -> Int32 {
        switch UnixSocketClient.connect(path: path) {
        case .success(let fd):
            close(fd)
            return 0
        case .failure(let failure):
            return failure.errno
        }
    }

    static func userName(_ uid: uid_t) -> String? {
        guard let entry = getpwuid(uid), let name = entry.pointee.pw_name else { return nil }
        return String(cString: name)
    }

    static func groupName(_ gid: gid_t) -> String? {
        guard let entry = getgrgid(gid), let name = entry.pointee.gr_name else { return nil }
        return String(cString: name)
    }

    /// The primary group and the supplementary groups of this process.
    static func groups() -> [gid_t] {
        var list = [gid_t](repeating: 0, count: 256)
        let count = getgroups(Int32(list.count), &list)
        return [getgid()] + list.prefix(Int(max(count, 0))).filter { $0 != getgid() }
    }
}
