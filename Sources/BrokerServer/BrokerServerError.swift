/// Why the socket server could not start or stopped.
public struct BrokerServerError: Error, Sendable, CustomStringConvertible {
    /// Stable codes.
    public enum Code: String, Sendable {
        /// Binding the socket failed.
        case bindFailed = "bind_failed"
        /// The socket path is taken by a live listener or a non-socket file.
        case socketPathInUse = "socket_path_in_use"
        /// The socket's directory is unsafe.
        case unsafeSocketDirectory = "unsafe_socket_directory"
        /// A connection was refused at accept (a limit).
        case connectionRefused = "connection_refused"
    }

    /// The code.
    public let code: Code
    /// What happened, naming the path.
    public let message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
