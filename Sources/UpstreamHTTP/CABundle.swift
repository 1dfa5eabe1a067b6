import Glibc
import NIOSSL

/// Checks a PEM CA bundle's text the way the transport loads it, so that a configuration
/// check can refuse a bundle start-up would fail on.
public enum CABundle {
    /// Where NIOSSL looks for the system bundle on Linux; it loads the first that is a file.
    static let systemBundlePaths = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"]

    /// The number of certificates in `pem`; throws `ca_file_invalid` when it holds none
    /// or a block that does not parse.
    public static func certificateCount(pem: [UInt8]) throws(UpstreamHTTPError) -> Int {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMBytes(pem)
        } catch {
            throw UpstreamHTTPError(code: .caFileInvalid, message: "is not a PEM certificate bundle (\(error))")
        }
        guard !certificates.isEmpty else { throw UpstreamHTTPError(code: .caFileInvalid, message: "contains no PEM certificate") }
        return certificates.count
    }

    /// Whether `path` is the very file NIOSSL already trusts as the system roots (same
    /// device and inode, so links count). Containers often set `SSL_CERT_FILE` to it:
    /// parsing its ~150 certificates again added only start-up time and heap.
    public static func isSystemBundle(_ path: String) -> Bool {
        guard let file = identity(of: path),
            let system = systemBundlePaths.lazy.compactMap(identity(of:)).first
        else { return false }
        return file == system
    }

    /// Device and inode of a regular file (following links), or nil.
    private static func identity(of path: String) -> [UInt64]? {
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        return [UInt64(info.st_dev), UInt64(info.st_ino)]
    }
}
