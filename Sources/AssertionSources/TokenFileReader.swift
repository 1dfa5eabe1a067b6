import FoundationEssentials
import Glibc
import PlainJSON
import TokenExchange

/// Reads one assertion file and explains precisely why it cannot be used.
///
/// Plain POSIX calls rather than `FileManager`: the `errno` of `open(2)` is what tells
/// "does not exist" from "permission denied", and `fstat` after `open` checks the file
/// we actually read (the path may be a symlink that kubelet swaps at any moment).
struct TokenFileReader: Sendable {
    /// Files larger than this are refused: a JWT is a few KiB, anything bigger is not one.
    static let maximumSize = 64 * 1024

    /// The path as configured; used as the assertion's origin in every message.
    let path: String

    /// Reads, trims and decodes the file. Never puts file content into an error.
    func read(loadedAt: Date) -> Result<Assertion, TokenExchangeError> {
        switch readText() {
        case .failure(let reason):
            return .failure(.assertionUnavailable(origin: path, reason: reason.text))
        case .success(let text):
            let jwt = text.trimmed()
            guard !jwt.isEmpty else {
                return .failure(.assertionUnavailable(origin: path, reason: "file is empty"))
            }
            do {
                return .success(try Assertion(jwt: jwt, origin: path, loadedAt: loadedAt))
            } catch {
                // JWTDecodingError.description reads "not a JWT: <what>" and holds no token text.
                return .failure(.assertionUnavailable(origin: path, reason: "\(error)"))
            }
        }
    }

    /// A reason the bytes could not be had, worded for an operator.
    struct Reason: Error {
        let text: String
    }

    private func readText() -> Result<String, Reason> {
        // O_NONBLOCK: a FIFO planted at the path must not block the caller in open();
        // the regular-file check below then refuses it. Regular files read as usual.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { return .failure(Reason(text: openFailure(errno))) }
        defer { close(fd) }

        var info = stat()
        guard fstat(fd, &info) == 0 else { return .failure(Reason(text: "cannot stat: \(describe(errno))")) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            return .failure(Reason(text: (info.st_mode & S_IFMT) == S_IFDIR ? "is a directory" : "not a regular file"))
        }
        guard info.st_size <= Self.maximumSize else {
            return .failure(Reason(text: "file is larger than \(Self.maximumSize / 1024) KiB"))
        }

        // Read up to one byte past the limit: the file may grow between fstat and read.
        var bytes = [UInt8](repeating: 0, count: Self.maximumSize + 1)
        var count = 0
        while count < bytes.count {
            let n = bytes.withUnsafeMutableBytes { buffer in
                Glibc.read(fd, buffer.baseAddress! + count, buffer.count - count)
            }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(Reason(text: "read failed: \(describe(errno))"))
            }
            if n == 0 { break }
            count += n
        }
        guard count <= Self.maximumSize else {
            return .failure(Reason(text: "file is larger than \(Self.maximumSize / 1024) KiB"))
        }
        guard let text = String(validating: bytes[..<count], as: UTF8.self) else {
            return .failure(Reason(text: "file is not UTF-8 text"))
        }
        return .success(text)
    }

    private func openFailure(_ code: Int32) -> String {
        switch code {
        case ENOENT:
            // Say which part is missing: a missing directory usually means the volume is not mounted.
            let directory = PathText.directory(path)
            var info = stat()
            if !directory.isEmpty, stat(directory, &info) != 0 {
                return "file does not exist (nor does its directory \(directory))"
            }
            return "file does not exist"
        case EACCES, EPERM: return "permission denied"
        case ELOOP: return "too many levels of symbolic links"
        case ENOTDIR: return "a component of the path is not a directory"
        default: return "cannot open: \(describe(code))"
        }
    }

    private func describe(_ code: Int32) -> String {
        String(cString: strerror(code)) + " (errno \(code))"
    }
}
