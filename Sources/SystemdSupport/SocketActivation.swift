import CSystemd
import Glibc

/// Sockets passed by the service manager (`LISTEN_FDS`, `LISTEN_PID`,
/// `LISTEN_FDNAMES`), e.g. from `tokenbroker.socket` or `systemd-socket-activate`.
public enum SocketActivation {
    /// One inherited listening socket.
    public struct ListeningSocket: Sendable, Equatable {
        /// The descriptor (3, 4, …), already close-on-exec.
        public var descriptor: Int32
        /// Its `FileDescriptorName=` (`broker`, `compat`), or `unknown`.
        public var name: String
    }

    /// The inherited sockets; empty when the process was not socket-activated.
    /// Unsets the `LISTEN_*` variables so children do not inherit them.
    public static func inheritedSockets() -> [ListeningSocket] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return [] }
        defer {
            if let names {
                for index in 0..<Int(count) { free(names[index]) }
                free(names)
            }
        }
        return (0..<Int(count)).map { index in
            let name = names?[index].map { String(cString: $0) } ?? "unknown"
            return ListeningSocket(descriptor: SD_LISTEN_FDS_START + Int32(index), name: name)
        }
    }
}
