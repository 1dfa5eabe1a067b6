/// A failure talking to the service manager or handling what it passed us.
public struct SystemdSupportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable codes, usable as log fields and metric labels.
    public enum Code: String, Sendable {
        /// A stored descriptor lacks the seals that make it immutable.
        case notSealed = "not_sealed"
        /// A stored descriptor could not be read, or is larger than allowed.
        case unreadable
        /// A memfd could not be made, written or sealed.
        case memfdFailed = "memfd_failed"
        /// `sd_pid_notify_with_fds` failed.
        case notifyFailed = "notify_failed"
    }

    /// What kind of failure.
    public let code: Code
    /// What exactly, with the errno text where there is one.
    public let message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
