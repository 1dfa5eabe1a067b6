import NIOSSL

/// Checks a PEM CA bundle's text the way the transport loads it, so that a configuration
/// check can refuse a bundle start-up would fail on.
public enum CABundle {
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
}
