import FoundationEssentials
import Glibc
import NIOSSL

/// Loads extra CA bundles eagerly, so that a wrong path fails when the daemon starts
/// rather than at the first token request (`.file(path)` trust roots load lazily).
enum TrustRoots {
    /// The certificates of every bundle in `paths`, in order; the system bundle itself is
    /// skipped, since the client configuration trusts it already.
    static func load(_ paths: [String]) throws(UpstreamHTTPError) -> [NIOSSLCertificate] {
        var certificates: [NIOSSLCertificate] = []
        for path in paths where !CABundle.isSystemBundle(path) {
            certificates += try loadBundle(path)
        }
        return certificates
    }

    private static func loadBundle(_ path: String) throws(UpstreamHTTPError) -> [NIOSSLCertificate] {
        var isDirectory = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw UpstreamHTTPError(code: .caFileUnreadable, message: "CA file \(path) does not exist")
        }
        guard !isDirectory else {
            throw UpstreamHTTPError(code: .caFileUnreadable, message: "CA file \(path) is a directory; name a PEM bundle file")
        }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw UpstreamHTTPError(code: .caFileUnreadable, message: "CA file \(path) is not readable: permission denied")
        }
        let certificates: [NIOSSLCertificate]
        do {
            // fromPEMFile reads every certificate of a bundle (the `file:format:` initializer reads one).
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw UpstreamHTTPError(code: .caFileInvalid, message: "CA file \(path) is not a PEM certificate bundle (\(error))")
        }
        guard !certificates.isEmpty else {
            throw UpstreamHTTPError(code: .caFileInvalid, message: "CA file \(path) contains no PEM certificate")
        }
        return certificates
    }
}
