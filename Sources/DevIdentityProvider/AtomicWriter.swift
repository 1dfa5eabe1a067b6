import FoundationEssentials

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a set of files the way kubelet's AtomicWriter updates a projected volume.
///
/// Layout after a write, for `files = ["azure-identity-token": …]`:
///
///     azure-identity-token -> ..data/azure-identity-token
///     ..data -> ..2026_11_28_10_00_00.123456789
///     ..2026_11_28_10_00_00.123456789/azure-identity-token
///
/// An update writes a new timestamped directory, points `..data_tmp` at it, renames
/// `..data_tmp` over `..data` (the one atomic step readers observe), creates any missing
/// user-visible symlinks, removes links for files that disappeared, then deletes the old
/// timestamped directory. A watcher on the file itself therefore loses it at the first
/// rotation, exactly as on a real node.
public enum AtomicWriter {
    /// Errors carry the failing step and `errno` text; they never contain file contents.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        /// What failed, e.g. `rename ..data_tmp -> ..data: No such file or directory`.
        public var description: String
    }

    /// Atomically replaces the payload of `directory` with `files` (path relative to the directory → contents).
    ///
    /// Paths may contain subdirectories (`a/b`); the user-visible link is then made for the first
    /// component, as kubelet does. When the payload equals what is already there, nothing is rewritten.
    /// - Parameter fileMode: permission bits of the written files (kubelet's default projection mode, 0644).
    public static func write(files: [String: [UInt8]], to directory: String, fileMode: UInt32 = 0o644) throws {
        for path in files.keys { try validate(path) }
        try makeDirectory(directory, mode: 0o755, allowExisting: true)

        let dataLink = directory + "/..data"
        let oldTimestampDir = readLink(dataLink)
        if let old = oldTimestampDir, payloadUnchanged(files, in: directory + "/" + old) {
            try createUserVisibleLinks(for: files.keys, in: directory)
            return
        }
        let oldPaths = oldTimestampDir.map { listFiles(in: directory + "/" + $0) } ?? []

        let timestampDir = try makeTimestampDirectory(in: directory)
        for (path, contents) in files.sorted(by: { $0.key < $1.key }) {
            try writeFile(timestampDir.path + "/" + path, contents: contents, mode: fileMode)
        }

        // `..data_tmp` can only exist if a previous writer died between symlink and rename.
        let tmpLink = directory + "/..data_tmp"
        _ = unlink(tmpLink)
        try check(symlink(timestampDir.name, tmpLink), "symlink \(timestampDir.name) ..data_tmp")
        try check(rename(tmpLink, dataLink), "rename ..data_tmp -> ..data")

        try createUserVisibleLinks(for: files.keys, in: directory)
        let newTopLevel = Set(files.keys.map(topLevelName))
        for removed in Set(oldPaths.map(topLevelName)).subtracting(newTopLevel) {
            _ = unlink(directory + "/" + removed)
        }
        if let old = oldTimestampDir, old != timestampDir.name {
            try? FileManager.default.removeItem(atPath: directory + "/" + old)
        }
    }

    // MARK: - Steps

    private static func validate(_ path: String) throws {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard !path.isEmpty, !path.hasPrefix("/"), !path.hasPrefix(".."),
            !parts.contains(where: { $0 == ".." || $0.isEmpty })
        else { throw Failure(description: "invalid payload path '\(path)'") }
    }

    private static func topLevelName(_ path: String) -> String {
        String(path.split(separator: "/").first ?? Substring(path))
    }

    /// `..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN` in UTC; kubelet uses a unique suffix after the seconds.
    private static func makeTimestampDirectory(in directory: String) throws -> (name: String, path: String) {
        for attempt in 0..<100 {
            var spec = timespec()
            clock_gettime(CLOCK_REALTIME, &spec)
            var seconds = time_t(spec.tv_sec)
            var parts = tm()
            gmtime_r(&seconds, &parts)
            let nanos = (Int(spec.tv_nsec) + attempt) % 1_000_000_000
            // `..%04d_%02d_%02d_%02d_%02d_%02d.%09d`, kubelet's name for a timestamped directory.
            func pad(_ value: some BinaryInteger, _ width: Int = 2) -> String {
                let digits = String(value)
                return String(repeating: "0", count: max(0, width - digits.count)) + digits
            }
            let date = "\(pad(Int(parts.tm_year) + 1900, 4))_\(pad(parts.tm_mon + 1))_\(pad(parts.tm_mday))"
            let name = "..\(date)_\(pad(parts.tm_hour))_\(pad(parts.tm_min))_\(pad(parts.tm_sec)).\(pad(nanos, 9))"
            let path = directory + "/" + name
            if mkdir(path, 0o700) == 0 {
                // kubelet creates the directory privately (MkdirTemp) and then opens it up.
                try check(chmod(path, 0o755), "chmod \(name)")
                return (name, path)
            }
            if errno != EEXIST { try check(-1, "mkdir \(name)") }
        }
        throw Failure(description: "could not create a unique timestamped directory in \(directory)")
    }

    /// Replaces the single file at `path` with `contents` and exactly `mode` (whatever the
    /// process's umask): written to a temporary name beside it, then renamed into place.
    public static func replaceFile(_ path: String, contents: [UInt8], mode: UInt32) throws {
        let temporary = "\(path).tmp-\(getpid())"
        _ = unlink(temporary)
        do {
            try writeFile(temporary, contents: contents, mode: mode)
            try check(rename(temporary, path), "rename \(temporary) -> \(path)")
        } catch {
            _ = unlink(temporary)
            throw error
        }
    }

    private static func writeFile(_ path: String, contents: [UInt8], mode: UInt32) throws {
        if let slash = path.lastIndex(of: "/") {
            try makeDirectory(String(path[..<slash]), mode: 0o755, allowExisting: true)
        }
        // A new file only, never through a symlink or into one someone put at the name.
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(mode))
        try check(fd, "open \(path)")
        defer { close(fd) }
        var offset = 0
        while offset < contents.count {
            let written = contents.withUnsafeBytes { buffer in
                posixWrite(fd, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written < 0, errno == EINTR { continue }
            try check(written < 0 ? -1 : 0, "write \(path)")
            offset += written
        }
        // open() applies the umask; the mode must be exact, as kubelet's chmod makes it.
        try check(fchmod(fd, mode_t(mode)), "chmod \(path)")
    }

    private static func createUserVisibleLinks(for paths: Dictionary<String, [UInt8]>.Keys, in directory: String) throws {
        for name in Set(paths.map(topLevelName)) {
            let link = directory + "/" + name
            // attributesOfItem does not follow links: a dangling link still counts as present.
            if (try? FileManager.default.attributesOfItem(atPath: link)) != nil { continue }
            try check(symlink("..data/" + name, link), "symlink ..data/\(name) \(name)")
        }
    }

    private static func payloadUnchanged(_ files: [String: [UInt8]], in timestampDir: String) -> Bool {
        let existing = listFiles(in: timestampDir)
        guard Set(existing) == Set(files.keys) else { return false }
        return files.allSatisfy { path, contents in
            FileManager.default.contents(atPath: timestampDir + "/" + path).map { [UInt8]($0) } == contents
        }
    }

    /// Relative paths of the regular files below `root`.
    private static func listFiles(in root: String) -> [String] {
        guard let paths = try? FileManager.default.subpathsOfDirectory(atPath: root) else { return [] }
        return paths.filter { relative in
            let attributes = try? FileManager.default.attributesOfItem(atPath: root + "/" + relative)
            return attributes?[.type] as? FileAttributeType == .typeRegular
        }
    }

    private static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func makeDirectory(_ path: String, mode: UInt32, allowExisting: Bool) throws {
        var isDirectory = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory, allowExisting {
            return
        }
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true,
                attributes: [.posixPermissions: Int(mode)])
        } catch {
            throw Failure(description: "mkdir \(path): \(error)")
        }
    }

    private static func check(_ result: Int32, _ step: @autoclosure () -> String) throws {
        guard result >= 0 else {
            throw Failure(description: "\(step()): \(String(cString: strerror(errno)))")
        }
    }
}

/// The C `write(2)`, reachable here because `AtomicWriter.write` shadows it inside the type.
private func posixWrite(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, bytes, count)
}
