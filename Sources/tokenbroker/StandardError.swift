import Glibc

/// Writes `text` to standard error unbuffered (what `FileHandle.standardError` did, without
/// full Foundation: the CLI runs in every pod and carries FoundationEssentials only).
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    var written = 0
    while written < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + written, $0.count - written) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return }
        written += n
    }
}

/// Runs `body` on a new detached thread (Foundation's `Thread.detachNewThread`, which
/// FoundationEssentials lacks). The relay serves each connection on one.
func detachThread(_ body: @escaping @Sendable () -> Void) {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(
        &thread, nil,
        { context in
            let body = Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue()
            body.run()
            return nil
        }, box)
    guard result == 0 else {
        // No thread: run it here rather than drop the connection.
        Unmanaged<ThreadBody>.fromOpaque(box).takeRetainedValue().run()
        return
    }
    pthread_detach(thread)
}

private final class ThreadBody: Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

extension StringProtocol {
    /// Without leading and trailing whitespace and newlines (Foundation's
    /// `trimmingCharacters(in: .whitespacesAndNewlines)`, from the standard library alone).
    func trimmingWhitespace() -> String { trimming(where: \.isWhitespace) }

    /// Without the leading and trailing characters `trimmed` matches.
    func trimming(where trimmed: (Character) -> Bool) -> String {
        guard let first = firstIndex(where: { !trimmed($0) }), let last = lastIndex(where: { !trimmed($0) }) else { return "" }
        return String(self[first...last])
    }
}
