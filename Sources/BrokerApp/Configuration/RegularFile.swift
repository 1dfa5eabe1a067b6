import CoreFoundation  // in a release build it owns `struct stat` here (MemberImportVisibility)
import Glibc

/// Reads the small files the configuration names (the configuration itself, a client
/// secret, the identity-header secret): regular files only, opened without blocking,
/// with a size cap.
///
/// `fopen` on a FIFO blocks until a writer appears — forever, on a SIGHUP worker — and
/// "reads" a directory as an empty file. Here the path is opened with `O_NONBLOCK`
/// (which makes opening a FIFO return at once), the descriptor is `fstat`ed, and anything
/// that is not a regular file is refused, naming what it is.
///
/// Symlinks are followed (no `O_NOFOLLOW`): a Kubernetes ConfigMap or Secret volume makes
/// every file a symlink into `..data/`, and refusing them would refuse the usual way these
/// files reach a pod. What is checked is the file the descriptor ends up naming.
enum RegularFile {
    /// Why a file was not read (`No such file or directory`, `is a FIFO (named pipe), not a
    /// regular file; …`), without the path.
    struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// The reason, e.g. `is a FIFO, not a regular file`.
        var description: String
    }

    /// The default cap: 1 MiB, far above any configuration.
    static let defaultLimit = 1 << 20

    /// The text of the regular file at `path`, at most `limit` bytes.
    static func read(_ path: String, limit: Int = defaultLimit) throws(Failure) -> String {
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard descriptor >= 0 else { throw Failure(description: String(cString: strerror(errno))) }
        defer { close(descriptor) }
        var info = Glibc.stat()
        guard Glibc.fstat(descriptor, &info) == 0 else { throw Failure(description: "fstat: \(String(cString: strerror(errno)))") }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw Failure(description: "\(kind(info.st_mode)), not a regular file; name a file")
        }
        guard info.st_size <= limit else { throw tooLarge(Int(info.st_size), limit: limit) }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = Glibc.read(descriptor, &chunk, chunk.count)
            if count < 0 {
                if errno == EINTR { continue }
                throw Failure(description: String(cString: strerror(errno)))
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[..<count])
            // The file grew while being read.
            guard bytes.count <= limit else { throw tooLarge(bytes.count, limit: limit) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// What a non-regular file is, for the message.
    static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "is a directory"
        case S_IFIFO: "is a FIFO (named pipe)"
        case S_IFSOCK: "is a socket"
        case S_IFCHR: "is a character device"
        case S_IFBLK: "is a block device"
        default: "is of file type 0\(String(mode & S_IFMT, radix: 8))"
        }
    }

    private static func tooLarge(_ size: Int, limit: Int) -> Failure {
        Failure(description: "is \(size) bytes; at most \(limit) are read")
    }
}
