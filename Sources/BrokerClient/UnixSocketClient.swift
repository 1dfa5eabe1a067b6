import Glibc

/// Connecting to a Unix stream socket by path: the one place the client side (the CLI's
/// `BrokerConnection`, the doctor's `socket.access` check) builds a `sockaddr_un`.
public enum UnixSocketClient {
    /// Why a connection was not made: the step that failed and its errno.
    public struct Failure: Error, Sendable {
        /// Where it failed.
        public enum Step: Sendable {
            /// The path is longer than a socket address holds (`errno` is ENAMETOOLONG).
            case address
            /// `socket(2)` failed.
            case socket
            /// `connect(2)` failed: the kernel's verdict on the path (ENOENT, EACCES, ECONNREFUSED…).
            case connect
        }

        public var step: Step
        public var errno: Int32
    }

    /// A connected, close-on-exec stream socket to `path`, with send and receive timeouts of
    /// `timeoutSeconds` when given; the caller closes it.
    public static func connect(path: String, timeoutSeconds: Int? = nil) -> Result<Int32, Failure> {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return .failure(Failure(step: .address, errno: ENAMETOOLONG)) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(Failure(step: .socket, errno: Glibc.errno)) }
        if let timeoutSeconds {
            var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else {
            let error = Glibc.errno
            close(fd)
            return .failure(Failure(step: .connect, errno: error))
        }
        return .success(fd)
    }
}
