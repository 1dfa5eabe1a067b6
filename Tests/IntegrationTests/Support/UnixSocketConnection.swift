import Foundation

/// A raw, blocking Unix-socket client for sending exactly the bytes a test wants
/// (valid lines, garbage, oversized lines) and reading answers line by line.
final class UnixSocketConnection: @unchecked Sendable {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(path: String, timeoutSeconds: Int = 30) throws {
        // Writing to a socket the broker closed must fail the write, not kill the test process.
        signal(SIGPIPE, SIG_IGN)
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket() failed") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let result = withUnixAddress(path) { connect(fd, $0, $1) }
        guard result == 0 else {
            Glibc.close(fd)
            throw HarnessError("connect(\(path)) failed: \(String(cString: strerror(errno)))")
        }
    }

    private var isClosed = false

    /// Closes the connection now rather than when the object goes away.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        Glibc.close(fd)
    }

    deinit { close() }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + sent, $0.count - sent) }
            guard n > 0 else { throw HarnessError("write failed: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    func shutdownWrite() { Glibc.shutdown(fd, Int32(SHUT_WR)) }

    /// The next line, or nil at EOF.
    func readLine() throws -> String? {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            let n = read(fd, &chunk, chunk.count)
            if n == 0 { return buffer.isEmpty ? nil : String(decoding: buffer, as: UTF8.self) }
            guard n > 0 else { throw HarnessError("read failed: \(String(cString: strerror(errno)))") }
            buffer.append(contentsOf: chunk[..<n])
        }
    }

    /// Everything until EOF.
    func readToEnd() throws -> String {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            buffer.append(contentsOf: chunk[..<n])
        }
        defer { buffer.removeAll() }
        return String(decoding: buffer, as: UTF8.self)
    }

    func readJSONLine() throws -> Reply {
        guard let line = try readLine() else { throw HarnessError("connection closed before an answer") }
        return try Reply(line)
    }
}

/// One JSON answer from the broker.
struct Reply: @unchecked Sendable, CustomStringConvertible {
    let object: [String: Any]

    init(_ line: String) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw HarnessError("answer is not a JSON object: \(line.prefix(200))")
        }
        self.object = object
    }

    subscript(key: String) -> Any? { object[key] }
    var description: String { "\(object.mapValues { "\($0)".prefix(80) })" }
    var ok: Bool { object["ok"] as? Bool ?? false }
    var token: String? { object["token"] as? String }
    var errorCode: String? { (object["error"] as? [String: Any])?["code"] as? String }
    var errorMessage: String { (object["error"] as? [String: Any])?["message"] as? String ?? "" }
    var upstreamCodes: [Int] { ((object["error"] as? [String: Any])?["upstream"] as? [String: Any])?["codes"] as? [Int] ?? [] }
}

/// Calls `body` with `path` as a `sockaddr_un`.
func withUnixAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}
