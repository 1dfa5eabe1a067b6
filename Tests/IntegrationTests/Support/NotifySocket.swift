import Foundation

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`: it records every
/// notification the daemon sends, in order.
final class NotifySocket: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let messages = MessageLog()
    private let reader: Thread

    init(path: String) throws {
        self.path = path
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        fd = descriptor
        guard descriptor >= 0 else { throw HarnessError("socket(AF_UNIX, SOCK_DGRAM) failed") }
        let bound = withUnixAddress(path) { bind(descriptor, $0, $1) }
        guard bound == 0 else { throw HarnessError("bind(\(path)) failed: \(String(cString: strerror(errno)))") }
        let messages = self.messages
        reader = Thread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = recv(descriptor, &buffer, buffer.count, 0)
                guard n > 0 else { return }  // closed
                let text = String(decoding: buffer[..<n], as: UTF8.self)
                messages.append(text)
            }
        }
        reader.start()
    }

    /// Every message received so far.
    var received: [String] { messages.all }

    /// Waits until some message satisfies `predicate`.
    func wait(for what: String, timeout: Duration = .seconds(20), _ predicate: @escaping (String) -> Bool) async throws {
        try await waitUntil(timeout: timeout, what) { self.received.contains(where: predicate) }
    }

    func close() {
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
        unlink(path)
    }
}

/// A lock-protected list of notifications.
private final class MessageLog: @unchecked Sendable {
    private let lock = NSLock()
    private var messages: [String] = []
    func append(_ message: String) { lock.withLock { messages.append(message) } }
    var all: [String] { lock.withLock { messages } }
}

extension NotifySocket {
    /// A notify socket in `directory` and this process's environment pointing the daemon at it.
    static func make(in directory: String, extra: [String: String] = [:]) throws -> (NotifySocket, [String: String]) {
        let notify = try NotifySocket(path: "\(directory)/notify.sock")
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "WATCHDOG_PID")
        environment["NOTIFY_SOCKET"] = notify.path
        environment.merge(extra) { _, new in new }
        return (notify, environment)
    }
}
