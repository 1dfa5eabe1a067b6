import Glibc

/// Writes all of `bytes` to `descriptor`, again after a short write or an interrupted one:
/// false on any other failure (`errno` says which) or a write that took nothing.
func writeAll(_ descriptor: CInt, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let count = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
        if count < 0, errno == EINTR { continue }
        guard count > 0 else { return false }
        offset += count
    }
    return true
}
