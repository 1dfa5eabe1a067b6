import CoreFoundation  // owns `struct stat` once Foundation is linked (MemberImportVisibility)
import Glibc
import Logging

/// A dev signing key kept in the state directory across starts (PEM, 0600).
///
/// Generating a 2048-bit RSA key is 0.1–0.2 s of CPU, most of what `tokenbrokerd --dev` did
/// before its first token; reading one back is well under a millisecond. A key that is
/// absent, not ours, readable by others or not an RSA key is replaced by a new one, with one
/// log line saying why. Tokens signed before a restart stay verifiable after it, as they
/// would against a real cluster whose service-account key does not change on restart.
enum SigningKeyFile {
    /// The saved key at `path`, or a new one saved there. `role` names the key in log lines.
    static func loadOrGenerate(path: String, role: String, logger: Logger) async throws -> SigningKey {
        let problem: String
        switch readPrivateFile(path) {
        case .success(let pem):
            do {
                return try await SigningKey.load(pem: pem)
            } catch {
                problem = "is not an RSA private key in PEM (\(error))"
            }
        case .failure(let reason):
            problem = reason.description
        }
        let key = try await SigningKey.generate()
        var metadata: Logger.Metadata = ["key.role": "\(role)", "key.path": "\(path)", "key.kid": "\(key.kid)"]
        do {
            try AtomicWriter.replaceFile(path, contents: Array(key.privatePEM.utf8), mode: 0o600)
        } catch {
            // The provider works without it; only the next start is slower.
            metadata["error"] = "\(error)"
            logger.warning("cannot save the generated dev signing key; the next start generates another", metadata: metadata)
        }
        if problem == absent {
            logger.info("generated a dev signing key (none saved yet); later starts reuse it", metadata: metadata)
        } else {
            logger.warning("the saved dev signing key \(problem): generated a new one in its place", metadata: metadata)
        }
        return key
    }

    private static let absent = "does not exist"

    private struct Unusable: Error, CustomStringConvertible {
        var description: String
    }

    /// The file's text, if it is a regular file of ours that nobody else can read or write.
    private static func readPrivateFile(_ path: String) -> Result<String, Unusable> {
        // O_NONBLOCK: a FIFO put at the path must not stop the start (fstat refuses it below).
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard descriptor >= 0 else {
            return .failure(Unusable(description: errno == ENOENT ? absent : "cannot be opened (\(String(cString: strerror(errno))))"))
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            return .failure(Unusable(description: "is not a regular file"))
        }
        guard info.st_uid == getuid(), info.st_mode & 0o077 == 0 else {
            return .failure(
                Unusable(description: "is not private to uid \(getuid()) (owner \(info.st_uid), mode 0\(String(info.st_mode & 0o777, radix: 8)))"))
        }
        guard info.st_size > 0, info.st_size <= 64 * 1024 else {
            return .failure(Unusable(description: "has an implausible size (\(info.st_size) bytes)"))
        }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var count = 0
        while count < bytes.count {
            let read = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress! + count, $0.count - count) }
            if read < 0, errno == EINTR { continue }
            guard read > 0 else {
                return .failure(Unusable(description: read == 0 ? "ended before its size" : "cannot be read (\(String(cString: strerror(errno))))"))
            }
            count += read
        }
        return .success(String(decoding: bytes, as: UTF8.self))
    }
}
