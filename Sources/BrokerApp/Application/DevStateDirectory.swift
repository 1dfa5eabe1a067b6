import CoreFoundation  // owns `struct stat` once Foundation is linked (MemberImportVisibility)
import Glibc

/// The directory dev mode keeps its CA, tokens and socket in, locked for as long
/// as one broker uses it: a second `tokenbrokerd --dev` on the same directory
/// would otherwise rewrite the first one's service-account token with its own
/// issuer's before failing on the socket, and break the first one's exchanges.
final class DevStateDirectory {
    let path: String
    private let lockDescriptor: Int32

    /// Creates the directory (0700) or takes an existing one of ours, then locks it.
    init(path: String) throws(DevModeError) {
        self.path = path
        try Self.prepare(path)
        let lockPath = "\(path)/lock"
        let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            throw DevModeError(message: "cannot open \(lockPath): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let holder = Self.readPID(descriptor).map { " (pid \($0))" } ?? ""
            close(descriptor)
            throw DevModeError(
                message: "another tokenbrokerd --dev\(holder) is using \(path); stop it, or give this one a directory of its own with --state-dir")
        }
        // The holder's pid, for the message above; the lock itself is the flock.
        let pid = "\(getpid())\n"
        _ = ftruncate(descriptor, 0)
        _ = pid.withCString { pwrite(descriptor, $0, strlen($0), 0) }
        lockDescriptor = descriptor
    }

    /// Releases the lock (at shutdown; a crash releases it too, with the descriptor).
    func unlock() { close(lockDescriptor) }

    /// A shared /tmp lets another user make the directory first and so control our
    /// CA, token and socket: use it only if it is ours and nobody else can write in it.
    private static func prepare(_ path: String) throws(DevModeError) {
        if mkdir(path, 0o700) != 0, errno != EEXIST {
            throw DevModeError(message: "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw DevModeError(message: "\(path) is not a directory; remove it or pass --state-dir with another path")
        }
        guard info.st_uid == getuid() else {
            throw DevModeError(
                message: "\(path) belongs to uid \(info.st_uid), not to you (uid \(getuid())); pass --state-dir with a directory of your own")
        }
        if info.st_mode & 0o022 != 0 {
            // Others may have put files in it already: we cannot know which are ours.
            throw DevModeError(
                message: "\(path) is writable by group or others (mode 0\(String(info.st_mode & 0o777, radix: 8))); "
                    + "remove it, or check its contents and run: chmod 700 \(path)")
        }
        // Ours and written only by us (e.g. just made with mkdir under umask 022): tighten it.
        if info.st_mode & 0o077 != 0, chmod(path, 0o700) != 0 {
            throw DevModeError(message: "cannot chmod 700 \(path): \(String(cString: strerror(errno)))")
        }
    }

    private static func readPID(_ descriptor: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 16)
        let count = pread(descriptor, &buffer, buffer.count - 1, 0)
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[..<count], as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        return Int32(text)
    }
}

/// Dev mode cannot start.
struct DevModeError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
