/// Why a sink's file could not be written, kept, or its rotation action run. The code is
/// stable: it is the `lastError.code` of the sink in `status` and a metrics label.
struct SinkError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, as a stable code.
    enum Code: String, Sendable {
        /// The path is a symbolic link.
        case symlink
        /// Something other than a regular file is at the path.
        case notRegularFile = "not_regular_file"
        /// The directory is writable by others, or owned by someone other than root or the daemon's user.
        case unsafeDirectory = "unsafe_directory"
        /// The directory does not exist (yet).
        case directoryMissing = "directory_missing"
        /// Creating, writing, syncing or renaming the file failed.
        case writeFailed = "write_failed"
        /// `owner` names no user or group on this system.
        case unknownOwner = "unknown_owner"
        /// The cache has no valid token (the exchange failed); `message` has the cache's code.
        case tokenUnavailable = "token_unavailable"
        /// The token in the file expired before a new one could be obtained: the file was removed.
        case tokenExpired = "token_expired"
        /// The token holds characters the format cannot carry (a newline in a header line…).
        case unsafeToken = "unsafe_token"
        /// `onRotate` failed (the file itself was written).
        case rotateFailed = "rotate_failed"
    }

    /// The code.
    var code: Code
    /// A message naming the path or the problem; never the token.
    var message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    var description: String { "\(code.rawValue): \(message)" }
}
