import UpstreamHTTP

/// Checks of what start-up would otherwise fail on later (binding the socket, loading the
/// CA bundle), so that `check-config` and a reload report them with their field.
extension ConfigurationLoader {
    /// The longest path a Unix socket address holds: `sun_path` is 108 bytes with the final NUL.
    static let maxSocketPathBytes = 107

    /// The largest CA bundle read (the system bundle is about 200 KiB).
    static let maxCABundleBytes = 4 << 20

    /// Whether `path` fits a Unix socket address; reports it at `field` when it does not.
    static func checkSocketPath(_ path: String, at field: String, node: Node?, reader: inout NodeReader) -> Bool {
        guard path.utf8.count > maxSocketPathBytes else { return true }
        reader.report(field, "is \(path.utf8.count) bytes; a Unix socket path holds at most \(maxSocketPathBytes)", node)
        return false
    }

    /// Reads the PEM bundle at `path` as the transport will, reporting at `field` a file that
    /// is missing, not a regular file, or holds no parsable certificate.
    static func checkCABundle(_ path: String, at field: String, node: Node?, reader: inout NodeReader) {
        let text: String
        do {
            text = try RegularFile.read(path, limit: maxCABundleBytes)
        } catch {
            reader.report(field, "cannot read the CA bundle \(path): \(error)", node)
            return
        }
        do {
            _ = try CABundle.certificateCount(pem: Array(text.utf8))
        } catch {
            reader.report(field, "the CA bundle \(path) \(error.message)", node)
        }
    }

    /// `SSL_CERT_FILE`, which the transport adds to its trust roots like `upstream.caFile`.
    static func checkEnvironmentCABundle(_ environment: [String: String], reader: inout NodeReader) {
        // The system bundle itself is what the transport trusts anyway and does not load again.
        guard let file = environment["SSL_CERT_FILE"], !file.isEmpty, !CABundle.isSystemBundle(file) else { return }
        checkCABundle(file, at: "env.SSL_CERT_FILE", node: nil, reader: &reader)
    }
}
