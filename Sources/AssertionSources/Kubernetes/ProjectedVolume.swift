import Glibc

/// Reads the files of one kubelet projected volume the only way the kubelet writes them
/// (its AtomicWriter): every visible name is a symlink `NAME -> ..data/NAME`, `..data` is a
/// symlink to a timestamped directory `..2026_11_28_10_00_00.123456789` beside it, and the
/// files are regular files in that directory.
///
/// Anything else is not read: a symlink that points elsewhere, a `..data` that is not a
/// single `..`-name, a special file, a file over 64 KiB. Every component is opened with
/// `O_NOFOLLOW` relative to the directory before it, so no path can be made to lead out of
/// the volume. Only the volume's own symlinks (`NAME`, `..data`) are resolved, by reading
/// them, never by the kernel following them.
enum ProjectedVolume {
    /// One file found in a volume.
    struct File: Equatable {
        /// The name a pod sees (`azure-identity-token`, or `dir/name` one level down).
        var name: String
        var text: String
    }

    /// The largest file read: a JWT is a few KiB.
    static let maximumFileSize = 64 * 1024

    /// The files of the volume directory open at `volume`, or nil when it is not laid out
    /// by the AtomicWriter (no `..data`).
    static func files(in volume: CInt) -> [File]? {
        guard let dataTarget = readLink(at: volume, "..data"), isTimestampDirectoryName(dataTarget) else { return nil }
        let data = openat(volume, dataTarget, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard data >= 0 else { return nil }
        defer { close(data) }
        var found: [File] = []
        for name in entries(of: volume) where !name.hasPrefix("..") {
            // The visible name must be the AtomicWriter's own link into `..data`.
            guard readLink(at: volume, name) == "..data/\(name)" else { continue }
            found += read(name, in: data, prefix: "", depth: 0)
        }
        return found.sorted { $0.name < $1.name }
    }

    /// `name` inside `directory`: a regular file, or (one level down) a directory of them.
    private static func read(_ name: String, in directory: CInt, prefix: String, depth: Int) -> [File] {
        let fd = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return [] }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            guard info.st_size <= maximumFileSize, let text = readText(fd) else { return [] }
            return [File(name: prefix + name, text: text)]
        case S_IFDIR where depth == 0:
            return entries(of: fd).filter { !$0.hasPrefix(".") }.flatMap { read($0, in: fd, prefix: "\(prefix)\(name)/", depth: 1) }
        default:
            return []
        }
    }

    /// `..2026_11_28_10_00_00.123456789`: two dots, then no `/`.
    static func isTimestampDirectoryName(_ name: String) -> Bool {
        name.hasPrefix("..") && name.count > 2 && !name.contains("/") && name != "..data"
    }

    static func readLink(at directory: CInt, _ name: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        let length = readlinkat(directory, name, &buffer, buffer.count - 1)
        guard length > 0 else { return nil }
        return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The names in a directory (without `.` and `..`); reads from a duplicate so `fd`'s
    /// own position is untouched.
    static func entries(of fd: CInt) -> [String] {
        let copy = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard copy >= 0, let stream = fdopendir(copy) else {
            if copy >= 0 { close(copy) }
            return []
        }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    private static func readText(_ fd: CInt) -> String? {
        var bytes = [UInt8](repeating: 0, count: maximumFileSize + 1)
        var count = 0
        while count < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + count, $0.count - count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            count += n
        }
        guard count <= maximumFileSize else { return nil }
        return String(validating: bytes[..<count], as: UTF8.self)
    }
}
