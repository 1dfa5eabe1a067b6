import CoreFoundation  // in a release build it owns `struct stat` here (MemberImportVisibility)
import FoundationEssentials
import Glibc

/// Writes a sink's file so that a reader only ever sees a whole token: the bytes go to a new
/// temporary file in the same directory (`O_CREAT|O_EXCL|O_NOFOLLOW`, created with the final
/// mode, then `fchown`, write, `fsync`), which is renamed over the path; the directory is
/// synced so the rename survives a crash. `SinkPathSafety` is checked first, every time.
enum SinkFile {
    /// The file's identity once written, to recognise it as ours later (before removing it).
    struct Written: Sendable, Equatable {
        var device: UInt64
        var inode: UInt64
    }

    /// Replaces the file at `path` with `bytes`, owned by `uid`:`gid` with `mode`.
    static func write(_ bytes: [UInt8], to path: String, mode: UInt32, uid: uid_t, gid: gid_t) throws(SinkError) -> Written {
        if let problem = SinkPathSafety.problem(path) { throw problem }
        let directory = SinkPathSafety.parent(of: path)
        let name = path.split(separator: "/").last.map(String.init) ?? "sink"
        var temporary = ""
        var descriptor: Int32 = -1
        for _ in 0..<8 {
            temporary = "\(directory)/.\(name).\(String(UInt64.random(in: 0...UInt64.max), radix: 36)).tmp"
            descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(mode))
            if descriptor >= 0 || errno != EEXIST { break }
        }
        guard descriptor >= 0 else { throw failure("create a temporary file in \(directory)") }
        var renamed = false
        defer {
            close(descriptor)
            if !renamed { unlink(temporary) }
        }
        // The umask may have taken bits from the mode `open` was given.
        guard fchown(descriptor, uid, gid) == 0 else { throw failure("give \(temporary) to uid \(uid) gid \(gid)") }
        guard fchmod(descriptor, mode_t(mode)) == 0 else { throw failure("set the mode of \(temporary)") }
        guard writeAll(descriptor, bytes) else { throw failure("write \(temporary)") }
        guard fsync(descriptor) == 0 else { throw failure("fsync \(temporary)") }
        var info = Glibc.stat()
        guard fstat(descriptor, &info) == 0 else { throw failure("fstat \(temporary)") }
        // Checked again right before the rename: the path may have become a symlink meanwhile.
        // (rename replaces a symlink itself and never writes through it; this makes it an error.)
        if let problem = SinkPathSafety.problem(path) { throw problem }
        guard rename(temporary, path) == 0 else { throw failure("rename \(temporary) to \(path)") }
        renamed = true
        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryDescriptor >= 0 {
            _ = fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
        return Written(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// Whether the file at `path` is still the one `written` made (not replaced, not removed).
    static func isUnchanged(_ path: String, _ written: Written) -> Bool {
        var info = Glibc.stat()
        guard lstat(path, &info) == 0 else { return false }
        return UInt64(info.st_dev) == written.device && UInt64(info.st_ino) == written.inode
    }

    /// Removes the file at `path` if it is still the one `written` made; a file someone else
    /// put there is left alone.
    @discardableResult
    static func remove(_ path: String, ifStill written: Written) -> Bool {
        guard isUnchanged(path, written) else { return false }
        return unlink(path) == 0
    }

    private static func failure(_ what: String) -> SinkError {
        SinkError(.writeFailed, "could not \(what): \(String(cString: strerror(errno)))")
    }
}

extension SinkFile {
    /// The file at `path` when it is a regular file (not a link) holding exactly `bytes` with
    /// this mode and owner, so that it need not be written again; nil otherwise.
    static func holds(_ bytes: [UInt8], at path: String, mode: UInt32, uid: uid_t, gid: gid_t) -> (written: Written, modified: Date)? {
        guard SinkPathSafety.problem(path) == nil else { return nil }
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var info = Glibc.stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG, UInt32(info.st_mode & 0o7777) == mode, info.st_uid == uid,
            info.st_gid == gid,
            Int(info.st_size) == bytes.count
        else { return nil }
        var content = [UInt8](repeating: 0, count: bytes.count + 1)
        let count = content.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        guard count == bytes.count, content.prefix(count).elementsEqual(bytes) else { return nil }
        return (Written(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)), Date(timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec)))
    }
}
