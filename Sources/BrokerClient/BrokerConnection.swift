import Glibc
import PlainJSON
public import TokenBrokerProtocol

/// A blocking NDJSON connection to the broker's socket (its own module so that the CLI
/// and `tokenbroker-doctor` share it). The CLI sends one request and reads one response;
/// the relay keeps one per client connection for many.
/// Nothing here needs an event loop. A class so the relay can keep one in a property
/// and drop it; the socket closes with the last reference.
public final class BrokerConnection {
    /// Why talking to the broker failed.
    public enum Failure: Error {
        /// The socket could not be reached (missing, refused, permission).
        case unreachable(String)
        /// The broker answered something that is not a v1 response.
        case protocolError(String)
        /// The broker did not answer within the timeout.
        case timedOut
        /// The broker closed the connection before answering (it is stopping, or closed an idle connection).
        case closed
    }

    private let fd: Int32

    public init(path: String, timeoutSeconds: Int) throws(Failure) {
        switch UnixSocketClient.connect(path: path, timeoutSeconds: timeoutSeconds) {
        case .success(let fd):
            self.fd = fd
        case .failure(let failure) where failure.step == .address:
            throw .unreachable("socket path is too long: \(path)")
        case .failure(let failure) where failure.step == .socket:
            throw .unreachable("cannot create a socket: \(String(cString: strerror(failure.errno)))")
        case .failure(let failure):
            if failure.errno == EACCES { throw .unreachable(Self.permissionAdvice(path)) }
            let reason = String(cString: strerror(failure.errno))
            throw .unreachable(
                "cannot connect to the broker at \(path): \(reason) (is tokenbrokerd running? set --socket or \(WireProtocol.socketEnvironmentVariable))"
            )
        }
    }

    deinit { close(fd) }

    /// What to do about EACCES: connecting needs write permission on the socket, which
    /// its group has (mode 0660) — name the group to join, or the directory in the way.
    public static func permissionAdvice(_ path: String) -> String {
        let prefix = "permission denied connecting to the broker at \(path)"
        var info = stat()
        guard stat(path, &info) == 0 else {
            let directory = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? ""
            return "\(prefix): you (uid \(getuid())) cannot enter \(directory); the broker's socket directory must be searchable by its clients"
        }
        let group = getgrgid(info.st_gid).map { String(cString: $0.pointee.gr_name) } ?? "gid \(info.st_gid)"
        let user = getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid \(getuid())"
        return "\(prefix): the socket (mode 0\(String(info.st_mode & 0o777, radix: 8))) lets group '\(group)' connect; "
            + "ask an administrator to add you: usermod -aG \(group) \(user) (then log in again), or run as a user the broker's allow rules name"
    }

    /// Sends `request` and reads its response.
    public func roundTrip(_ request: BrokerRequest) throws(Failure) -> BrokerResponse {
        try answer(request).response
    }

    /// Sends `request` and reads its response, with the answer's JSON object as read (for
    /// printing it whole: `get --output json`, `status --json`).
    public func answer(_ request: BrokerRequest) throws(Failure) -> (response: BrokerResponse, document: [String: Any]) {
        var line = request.jsonBytes()
        line.append(UInt8(ascii: "\n"))
        var sent = 0
        while sent < line.count {
            let n = line.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw .closed }
            sent += n
        }
        var received = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while !received.contains(UInt8(ascii: "\n")) {
            let n = read(fd, &chunk, chunk.count)
            if n == 0 { break }
            guard n > 0 else {
                if errno == EAGAIN { throw .timedOut }
                throw .unreachable(String(cString: strerror(errno)))
            }
            received.append(contentsOf: chunk[..<n])
            guard received.count <= 4 << 20 else { throw .protocolError("the broker's response is larger than 4 MiB") }
        }
        let lineEnd = received.firstIndex(of: UInt8(ascii: "\n")) ?? received.endIndex
        guard lineEnd > 0 else { throw .closed }
        guard let document = UntypedJSON.object(received[..<lineEnd]) else {
            throw .protocolError("the broker's response is not a protocol v1 JSON object")
        }
        do throws(AnswerShapeError) {
            return (try BrokerResponse(reading: document), document)
        } catch {
            throw .protocolError("the broker's response is not a protocol v1 JSON object: field '\(error.field)' is missing or has the wrong type")
        }
    }
}
