import CSystemd
import Glibc

/// Descriptors passed by the service manager (`LISTEN_FDS`, `LISTEN_PID`,
/// `LISTEN_FDNAMES`): listening sockets from `tokenbroker.socket` or
/// `systemd-socket-activate`, and what the file-descriptor store kept for us.
public enum SocketActivation {
    /// One inherited listening socket.
    public struct ListeningSocket: Sendable, Equatable {
        /// The descriptor (3, 4, …), already close-on-exec.
        public var descriptor: Int32
        /// Its `FileDescriptorName=` (`broker`, `compat`), or `unknown`.
        public var name: String
    }

    /// What the service manager passed, split by kind.
    public struct Inherited: Sendable, Equatable {
        /// Listening sockets, in the order passed.
        public var sockets: [ListeningSocket] = []
        /// Descriptors from the file-descriptor store, by `FDNAME=` (the last of a name
        /// wins; the others are closed).
        public var stored: [String: Int32] = [:]
    }

    /// The inherited descriptors; empty when the process was not started with any.
    /// Unsets the `LISTEN_*` variables so children do not inherit them.
    ///
    /// A descriptor named like a store entry (`FileDescriptorStore.tokenCacheName`) or
    /// that is not a socket is never taken for a listening socket, and a socket is never
    /// taken for a store entry.
    public static func inherited() -> Inherited {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        var result = Inherited()
        guard count > 0 else { return result }
        defer {
            if let names {
                for index in 0..<Int(count) { free(names[index]) }
                free(names)
            }
        }
        for index in 0..<Int(count) {
            let descriptor = SD_LISTEN_FDS_START + Int32(index)
            let name = names?[index].map { String(cString: $0) } ?? "unknown"
            let isSocket = sd_is_socket(descriptor, AF_UNSPEC, 0, -1) > 0
            if name == FileDescriptorStore.tokenCacheName, !isSocket {
                if let previous = result.stored.updateValue(descriptor, forKey: name) { close(previous) }
            } else if isSocket, name != FileDescriptorStore.tokenCacheName {
                result.sockets.append(ListeningSocket(descriptor: descriptor, name: name))
            } else {
                close(descriptor)  // neither: nothing of ours would use it
            }
        }
        return result
    }
}
