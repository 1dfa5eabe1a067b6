import Glibc

/// Writes `text` to standard error unbuffered (what `FileHandle.standardError` did, without
/// Foundation), whole: a write cut short or interrupted is continued. Usage errors and the
/// executables' own failures go out this way.
public func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    var written = 0
    while written < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + written, $0.count - written) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return }
        written += n
    }
}
