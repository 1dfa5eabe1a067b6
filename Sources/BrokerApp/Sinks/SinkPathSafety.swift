import CoreFoundation  // in a release build it owns `struct stat` here (MemberImportVisibility)
import Glibc

/// The rules a sink path must keep, checked by `check-config` and again before every write:
/// the path is not a symbolic link nor anything but a regular file, its directory belongs to
/// root or the daemon's user and is not writable by others, and no directory above it is
/// writable by others without the sticky bit. Whoever could write the directory could swap
/// the file between our writes, or point the path at a file of their choosing.
enum SinkPathSafety {
    /// The first rule `path` breaks, or nil. `daemonUID`: the user the daemon runs as;
    /// `alsoAllowed`: other owners the directory may have (see `checkConfigOwners`).
    static func problem(_ path: String, daemonUID: uid_t = getuid(), alsoAllowed: [uid_t] = []) -> SinkError? {
        var info = Glibc.stat()
        if lstat(path, &info) == 0 {
            if info.st_mode & S_IFMT == S_IFLNK {
                return SinkError(.symlink, "\(path) is a symbolic link; a sink path must name the file itself")
            }
            if info.st_mode & S_IFMT != S_IFREG {
                return SinkError(.notRegularFile, "\(path) \(RegularFile.kind(info.st_mode)), not a regular file")
            }
        }
        let directory = parent(of: path)
        guard stat(directory, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            return SinkError(.directoryMissing, "the directory \(directory) cannot be used: \(reason)")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            return SinkError(.directoryMissing, "\(directory) \(RegularFile.kind(info.st_mode)), not a directory")
        }
        if info.st_mode & othersWrite != 0 {
            return SinkError(
                .unsafeDirectory,
                "the directory \(directory) is writable by others (mode \(octal(info.st_mode))); use a directory only root or the daemon's user can write"
            )
        }
        if info.st_uid != 0, info.st_uid != daemonUID, !alsoAllowed.contains(info.st_uid) {
            return SinkError(
                .unsafeDirectory,
                "the directory \(directory) is owned by uid \(info.st_uid); it must be owned by root or the daemon's user (uid \(daemonUID))")
        }
        var ancestor = directory
        while ancestor != "/" {
            ancestor = parent(of: ancestor)
            guard stat(ancestor, &info) == 0 else { continue }
            if info.st_mode & othersWrite != 0, info.st_mode & sticky == 0 {
                return SinkError(
                    .unsafeDirectory,
                    "the directory \(ancestor) above \(path) is writable by others without the sticky bit (mode \(octal(info.st_mode)))")
            }
        }
        return nil
    }

    /// Owners accepted when the configuration is loaded: `check-config` usually runs as root
    /// while the packaged daemon runs as user `tokenbroker`, whose directory is then as good as
    /// root's. The daemon itself (at each write) accepts only root and its own user.
    static var checkConfigOwners: [uid_t] {
        getpwnam("tokenbroker").map { [$0.pointee.pw_uid] } ?? []
    }

    private static let othersWrite: mode_t = 0o002
    private static let sticky: mode_t = 0o1000

    /// The directory part of an absolute path (`/` for `/x`).
    static func parent(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    private static func octal(_ mode: mode_t) -> String {
        "0" + String(mode & 0o7777, radix: 8)
    }
}
