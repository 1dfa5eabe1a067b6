import CEpoll
import CSocketDiag  // owns <sys/socket.h>'s types in a release build (MemberImportVisibility)
import Glibc

/// Preparing and cleaning up the socket's path on disk.
enum UnixSocketPath {
    /// Creates the parent directory if missing and refuses unsafe situations: a parent
    /// someone else could change (see `checkDirectory`), an existing non-socket file, or a
    /// socket another process still listens on.
    static func prepare(_ path: String) throws(BrokerServerError) {
        let parent = parentDirectory(of: path)
        if !parent.isEmpty, (try? fileStat(parent)) == nil {
            try makeDirectories(parent)
        }
        if !parent.isEmpty { try checkDirectory(parent) }
        guard let existing = try? fileStat(path) else { return }
        guard existing.st_mode & S_IFMT == S_IFSOCK else {
            throw BrokerServerError(.socketPathInUse, "\(path) exists and is not a socket; refusing to replace it")
        }
        if isListening(path) {
            throw BrokerServerError(.socketPathInUse, "another process is already listening on \(path)")
        }
        // A stale socket from a previous run: it is replaced atomically by rename().
    }

    /// Refuses a socket directory another user could change: world-writable (the sticky bit
    /// does not help: whoever creates the name first owns it, and a squatter's socket or
    /// symlink would be taken for ours by clients), or owned by a user other than root and
    /// the daemon's, who could replace the socket at will.
    static func checkDirectory(_ directory: String) throws(BrokerServerError) {
        let info = try fileStat(directory)
        let mode = "0" + String(info.st_mode & 0o7777, radix: 8)
        if info.st_mode & S_IWOTH != 0 {
            throw BrokerServerError(
                .unsafeSocketDirectory,
                "socket directory \(directory) (mode \(mode)) is world-writable; refusing to listen there; use a directory only root or this daemon can write"
            )
        }
        let daemon = geteuid()
        if info.st_uid != 0 && info.st_uid != daemon {
            throw BrokerServerError(
                .unsafeSocketDirectory,
                "socket directory \(directory) is owned by uid \(info.st_uid), not root or this daemon's user (uid \(daemon)): its owner could replace the socket; refusing to listen there"
            )
        }
    }

    /// Whether connecting to `path` succeeds.
    static func isListening(_ path: String) -> Bool {
        guard var address = address(path) else { return false }
        // SOCK_CLOEXEC is O_CLOEXEC on Linux; the release build does not see SOCK_CLOEXEC here.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | O_CLOEXEC, 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return result == 0
    }

    /// A non-blocking socket bound to `path` (replacing a socket file there) and listening.
    static func listen(at path: String, backlog: CInt) throws(BrokerServerError) -> CInt {
        guard var address = address(path) else {
            throw BrokerServerError(
                .bindFailed, "socket path \(path) is longer than the \(MemoryLayout<sockaddr_un>.size - 3) bytes a Unix socket address holds")
        }
        // SOCK_NONBLOCK/SOCK_CLOEXEC are O_NONBLOCK/O_CLOEXEC on Linux.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | O_NONBLOCK | O_CLOEXEC, 0)
        guard fd >= 0 else { throw BrokerServerError(.bindFailed, "socket: \(String(cString: strerror(errno)))") }
        if let info = try? fileStat(path), info.st_mode & S_IFMT == S_IFSOCK { unlink(path) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, backlog) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw BrokerServerError(.bindFailed, "cannot listen on \(path): \(reason)")
        }
        return fd
    }

    private static func address(_ path: String) -> sockaddr_un? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    static func fileStat(_ path: String) throws(BrokerServerError) -> stat {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw BrokerServerError(.bindFailed, "cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        return info
    }

    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func makeDirectories(_ path: String) throws(BrokerServerError) {
        var prefix = ""
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += (prefix.isEmpty && !path.hasPrefix("/") ? "" : "/") + component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw BrokerServerError(.bindFailed, "cannot create directory \(prefix): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Removes `path` only if it is still the socket we created (same inode), so a
    /// newer daemon's socket is never deleted.
    static func removeIfOurs(_ path: String, inode: UInt) {
        guard let info = try? fileStat(path), UInt(info.st_ino) == inode else { return }
        unlink(path)
    }
}
