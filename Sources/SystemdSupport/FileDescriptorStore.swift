import CSystemd
import Glibc

/// systemd's file-descriptor store (`FileDescriptorStoreMax=` in the unit): state handed to
/// PID 1 as a sealed memfd, kept there across restarts of the service and passed back at the
/// next start with the socket-activation descriptors (`LISTEN_FDNAMES`). Nothing touches disk.
public enum FileDescriptorStore {
    /// The `FDNAME=` of the token cache's memfd.
    public static let tokenCacheName = "tokencache"

    /// Whether a service manager listens (`NOTIFY_SOCKET` is set); without one nothing is stored.
    public static var isAvailable: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// Stores `bytes` in a new sealed memfd under `name`, replacing what was stored under it.
    ///
    /// The store keeps every descriptor sent, several under one name (it drops only
    /// duplicates of one open file), so the old one is removed first with `FDSTOREREMOVE=1`,
    /// as systemd's own daemons do (`notify_push_fd` in src/shared/daemon-util.c).
    /// `FDPOLL=0`: a memfd never hangs up; there is nothing to watch. Waits (at most 5 s) for
    /// the manager to have handled it. Returns false when no service manager listens.
    @discardableResult
    public static func store(_ bytes: [UInt8], name: String) throws(SystemdSupportError) -> Bool {
        guard isAvailable else { return false }
        let fd = tb_memfd_create(name)
        guard fd >= 0 else { throw SystemdSupportError(.memfdFailed, "memfd_create: \(errnoText())") }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { throw SystemdSupportError(.memfdFailed, "write to memfd: \(errnoText())") }
            offset += written
        }
        guard tb_seal_all(fd) == 0 else { throw SystemdSupportError(.memfdFailed, "sealing the memfd: \(errnoText())") }
        remove(name: name)
        var descriptors = [fd]
        let sent = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=\(name)\nFDPOLL=0", &descriptors, 1)
        guard sent >= 0 else { throw SystemdSupportError(.notifyFailed, "FDSTORE=1: \(String(cString: strerror(-sent)))") }
        // Returns once the manager has handled both messages: a process that exits right
        // after its last store must not leave it unread (the manager could no longer tell
        // whose it was). A manager without barriers (< 246) lets it time out.
        _ = sd_notify_barrier(0, 5_000_000)
        return sent > 0
    }

    /// Asks the service manager to drop what it keeps under `name`.
    public static func remove(name: String) {
        _ = sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=\(name)")
    }

    /// The contents of a stored memfd passed back at start; closes `descriptor`. Refuses a
    /// descriptor that is not a memfd sealed against writing, resizing and re-sealing
    /// (anyone could have changed it), or larger than `limit` bytes.
    public static func read(descriptor: Int32, limit: Int = 256 << 20) throws(SystemdSupportError) -> [UInt8] {
        defer { close(descriptor) }
        let seals = tb_seals(descriptor)
        guard seals >= 0 else { throw SystemdSupportError(.notSealed, "the descriptor is not a sealable memfd (F_GET_SEALS: \(errnoText()))") }
        guard seals & tb_required_seals() == tb_required_seals() else {
            throw SystemdSupportError(.notSealed, "the memfd is not sealed (seals 0x\(String(seals, radix: 16)); need write, grow, shrink and seal)")
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw SystemdSupportError(.unreadable, "fstat: \(errnoText())") }
        let size = Int(info.st_size)
        guard size <= limit else { throw SystemdSupportError(.unreadable, "\(size) bytes, more than the \(limit) allowed") }
        var bytes = [UInt8](repeating: 0, count: size)
        var offset = 0
        while offset < size {
            let got = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + offset, size - offset, off_t(offset)) }
            if got < 0, errno == EINTR { continue }
            guard got > 0 else { throw SystemdSupportError(.unreadable, "read: \(got == 0 ? "ended early" : errnoText())") }
            offset += got
        }
        return bytes
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}
