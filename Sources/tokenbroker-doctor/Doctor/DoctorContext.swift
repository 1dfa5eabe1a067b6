import Foundation
import Glibc

/// What the checks examine, gathered once by the command: the environment, the paths
/// and the clock, the HTTP client, and the token file read once for every check.
final class DoctorContext {
    /// The process environment (the checks never read it themselves).
    let environment: [String: String]
    /// The broker's socket: `--socket`, else `TOKENBROKER_SOCKET`, else the default.
    let socketPath: String
    /// The assertion file: `--token-file`, else `AZURE_FEDERATED_TOKEN_FILE`.
    let tokenFilePath: String?
    /// The audience Entra expects in the assertion (`--audience`).
    let expectedAudience: String
    /// The token service: `--authority-host`, else `AZURE_AUTHORITY_HOST`, else Entra's public cloud.
    let authorityHost: String
    /// Seconds each socket or HTTP exchange may take.
    let timeoutSeconds: Int
    /// Network probes, nil with `--offline`.
    let http: (any DoctorHTTP)?
    /// Wall-clock time (a parameter so that evaluations are pure).
    let now: () -> Date

    /// The token file, read on first use and shared by the checks that need it.
    private(set) lazy var tokenFile: TokenFileRead? = tokenFilePath.map { TokenFileRead.read($0) }

    init(
        environment: [String: String], socketPath: String, tokenFilePath: String?, expectedAudience: String, authorityHost: String,
        timeoutSeconds: Int, http: (any DoctorHTTP)?, now: @escaping () -> Date = Date.init
    ) {
        self.environment = environment
        self.socketPath = socketPath
        self.tokenFilePath = tokenFilePath
        self.expectedAudience = expectedAudience
        self.authorityHost = authorityHost
        self.timeoutSeconds = timeoutSeconds
        self.http = http
        self.now = now
    }
}

/// The outcome of reading the token file: its decoded claims and when it was written,
/// or why it could not be read. The text itself is not kept.
enum TokenFileRead {
    case unreadable(String)
    case malformed(String, modified: Date)
    case token(PeekedJWT, modified: Date, kubeletLayout: Bool)

    /// The decoded token, if the file held one.
    var token: PeekedJWT? {
        if case .token(let token, _, _) = self { return token }
        return nil
    }

    static func read(_ path: String) -> TokenFileRead {
        var info = stat()
        guard stat(path, &info) == 0 else { return .unreadable("\(path): \(String(cString: strerror(errno)))") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { return .unreadable("\(path) is not a regular file") }
        let modified = Date(timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec))
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            return .unreadable(
                "\(path) (mode \(String(info.st_mode & 0o7777, radix: 8)), owner uid \(info.st_uid) gid \(info.st_gid)): \(String(cString: strerror(errno))) for uid \(getuid())"
            )
        }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 64 * 1024)
        let count = Glibc.read(fd, &bytes, bytes.count)
        guard count >= 0 else { return .unreadable("\(path): \(String(cString: strerror(errno)))") }
        guard count > 0 else { return .malformed("the file is empty", modified: modified) }
        guard count < bytes.count else { return .malformed("the file is larger than 64 KiB; a JWT is a few KiB", modified: modified) }
        do {
            let token = try PeekedJWT(compact: String(decoding: bytes[..<count], as: UTF8.self))
            return .token(token, modified: modified, kubeletLayout: isKubeletLayout(path))
        } catch {
            return .malformed(error.reason, modified: modified)
        }
    }

    /// The kubelet's AtomicWriter publishes `name -> ..data/name` (it rotates by swapping `..data`).
    private static func isKubeletLayout(_ path: String) -> Bool {
        var target = [CChar](repeating: 0, count: 4096)
        let count = readlink(path, &target, target.count - 1)
        guard count > 0 else { return false }
        return String(decoding: target[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self).hasPrefix("..data/")
    }
}
