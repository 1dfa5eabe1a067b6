import Glibc

/// The App Service `X-IDENTITY-HEADER` secret: read from its file, or created there
/// with 256 random bits (mode 0600, never replacing a file another process just
/// wrote) so that it survives restarts and programs configured with it keep working.
enum IdentityHeaderSecret {
    /// The secret in `path`, creating the file when it does not exist.
    static func loadOrCreate(_ path: String) throws(ConfigurationError) -> String {
        if let existing = try read(path) { return existing }
        var generator = SystemRandomNumberGenerator()
        let secret = (0..<32).map { _ in String(UInt8.random(in: .min ... .max, using: &generator), radix: 16).leftPadded(to: 2) }.joined()
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            // Lost a race with another writer: use theirs.
            if errno == EEXIST, let existing = try read(path) { return existing }
            throw failure(path, "cannot create it: \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        let line = secret + "\n"
        let written = line.withCString { write(descriptor, $0, strlen($0)) }
        guard written == line.utf8.count, fsync(descriptor) == 0 else {
            unlink(path)
            throw failure(path, "cannot write it: \(String(cString: strerror(errno)))")
        }
        return secret
    }

    /// The secret in `path`, or nil when the file does not exist (`check-config` reads an
    /// existing file the same way start-up will).
    static func read(_ path: String) throws(ConfigurationError) -> String? {
        guard access(path, F_OK) == 0 else { return nil }
        let text: String
        do {
            text = try RegularFile.read(path, limit: 4096)
        } catch {
            throw failure(path, "cannot read it: \(error)")
        }
        let secret = text.trimmingWhitespace()
        guard secret.utf8.count >= 16, secret.utf8.count <= 1024, secret.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            throw failure(path, "must hold one line of 16 to 1024 printable characters (the X-IDENTITY-HEADER value)")
        }
        return secret
    }

    private static func failure(_ path: String, _ message: String) -> ConfigurationError {
        ConfigurationError(origin: path, issues: [.init(path: "compat.identityHeaderFile", message: message)])
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }

    /// Without leading and trailing spaces, tabs and line ends (scalars, so `\r\n` counts too).
    fileprivate func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        let isSpace: (Unicode.Scalar) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = scalars.firstIndex(where: { !isSpace($0) }), let last = scalars.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(scalars[first...last])
    }
}
