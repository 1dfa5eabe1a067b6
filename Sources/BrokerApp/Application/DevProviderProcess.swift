import DetachedThread
import ExecPlugins
import FoundationEssentials
import Glibc
import Logging
import ServiceLifecycle
import Synchronization

/// `tokenbrokerd --dev`'s provider: `tokenbroker-dev-provider` (the dev issuer and Entra
/// emulator) as a child process, found next to the daemon's own executable.
///
/// The two share one Unix socket pair: the child writes `ready` once `provider.json` is
/// written, and stops when the daemon's end closes — however the daemon ends. As a service
/// in the daemon's group it stops the child at shutdown, and a child that exits on its own
/// stops the daemon (dev mode cannot serve without it).
final class DevProviderProcess: Service {
    /// What the daemon reads of `provider.json` (the provider documents the whole file).
    struct Endpoints: Decodable {
        var issuerURL: String
        var authorityHost: String
        var tenantId: String
        var clientId: String
        var caFile: String
        var tokenFile: String
    }

    /// Executable name, looked up in the daemon's own directory.
    static let executableName = "tokenbroker-dev-provider"

    let pid: pid_t
    let endpoints: Endpoints
    /// Our end of the socket pair; closing it (at exit, or in `deinit`) stops the child.
    private let parentEnd: Int32

    private init(pid: pid_t, endpoints: Endpoints, parentEnd: Int32) {
        self.pid = pid
        self.endpoints = endpoints
        self.parentEnd = parentEnd
    }

    deinit { close(parentEnd) }

    /// Starts the provider with its state in `stateDirectory` and returns once it is ready.
    static func start(stateDirectory: String, logArguments: [String]) async throws(DevModeError) -> DevProviderProcess {
        let executable = ownDirectory() + "/" + executableName
        guard access(executable, X_OK) == 0 else {
            throw DevModeError(message: "dev mode needs \(executableName) next to tokenbrokerd, and \(executable) is missing or not executable")
        }
        var ends: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            throw DevModeError(message: "cannot make the dev provider's socket pair: \(String(cString: strerror(errno)))")
        }
        let (parentEnd, childEnd) = (ends[0], ends[1])
        let arguments = ["--state-dir", stateDirectory, "--parent-fd", "3"] + logArguments
        let spawned = spawn(executable, arguments: arguments, descriptor3: childEnd)
        close(childEnd)
        guard case .success(let pid) = spawned else {
            close(parentEnd)
            throw DevModeError(message: "cannot start \(executable): \(String(cString: strerror(spawned.errorNumber)))")
        }
        guard await readReady(parentEnd) else {
            close(parentEnd)
            kill(pid, SIGKILL)
            let status = await waitForExit(pid)
            throw DevModeError(message: "the dev provider (\(executable)) \(status) before it was ready; its log is above")
        }
        do {
            let json = try RegularFile.read(stateDirectory + "/provider.json")
            let endpoints = try JSONDecoder().decode(Endpoints.self, from: Data(json.utf8))
            return DevProviderProcess(pid: pid, endpoints: endpoints, parentEnd: parentEnd)
        } catch {
            close(parentEnd)
            _ = await waitForExit(pid)
            throw DevModeError(message: "the dev provider's \(stateDirectory)/provider.json is unreadable: \(error)")
        }
    }

    func run() async throws {
        let (pid, parentEnd) = (pid, parentEnd)
        let stopping = Flag()
        let reaped = Flag()
        let status = await withTaskCancellationOrGracefulShutdownHandler {
            let status = await Self.waitForExit(pid)
            reaped.set()
            return status
        } onCancelOrGracefulShutdown: {
            stopping.set()
            // The child stops when our end closes (it ignores SIGINT and SIGTERM, which a
            // terminal or systemd send to the whole group): shut the socket down.
            shutdown(parentEnd, Int32(SHUT_RDWR))
            // The daemon's shutdown waits for the child: bound that wait.
            _ = DetachedThread.tryStart {
                sleep(5)
                if !reaped.isSet { kill(pid, SIGKILL) }
            }
        }
        if !stopping.isSet { throw DevModeError(message: "the dev provider \(status): dev mode cannot go on without it") }
    }

    // MARK: The child process

    /// The directory of `/proc/self/exe`.
    private static func ownDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let path = count > 0 ? String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
        return path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    }

    /// Spawns `executable` with `descriptor3` as its fd 3, stdout and stderr shared with the
    /// daemon and nothing else (`SpawnIsolation`, as for plugins), and without systemd's
    /// variables, which describe the daemon.
    private static func spawn(_ executable: String, arguments: [String], descriptor3: Int32) -> SpawnResult {
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        guard posix_spawn_file_actions_init(&actions) == 0, posix_spawnattr_init(&attributes) == 0 else { return .failure(ENOMEM) }
        defer {
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attributes)
        }
        // dup2 onto itself would keep FD_CLOEXEC: take the descriptor off 3 first.
        let source = descriptor3 == 3 ? fcntl(descriptor3, F_DUPFD_CLOEXEC, 4) : descriptor3
        defer { if source != descriptor3 { close(source) } }
        posix_spawn_file_actions_adddup2(&actions, source, 3)
        // Before BrokerApplication.run takes them, systemd's passed descriptors (listening
        // sockets, the stored token cache's memfd) are still inheritable: close them all.
        SpawnIsolation.apply(to: &actions, &attributes, closingFrom: 4)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let environment = childEnvironment().map { strdup($0) } + [nil]
        defer { (argv + environment).forEach { free($0) } }
        var pid = pid_t()
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, environment)
        return result == 0 ? .success(pid) : .failure(result)
    }

    /// The daemon's environment without what systemd meant for the daemon alone.
    private static func childEnvironment() -> [String] {
        let daemonOnly = ["LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES=", "NOTIFY_SOCKET=", "WATCHDOG_PID=", "WATCHDOG_USEC="]
        var variables: [String] = []
        var cursor = environ
        while let entry = cursor.pointee {
            let variable = String(cString: entry)
            if !daemonOnly.contains(where: variable.hasPrefix) { variables.append(variable) }
            cursor += 1
        }
        return variables
    }

    private enum SpawnResult {
        case success(pid_t)
        case failure(Int32)
        var errorNumber: Int32 { if case .failure(let number) = self { number } else { 0 } }
    }

    /// Waits (on a thread of its own, not the cooperative pool) for the child's `ready` line;
    /// false when its end closes first (it exited) or it says nothing for a minute.
    private static func readReady(_ descriptor: Int32) async -> Bool {
        await onThread {
            var received: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 64)
            while !received.contains(UInt8(ascii: "\n")) {
                var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                let ready = poll(&poller, 1, 60_000)
                if ready < 0 && errno == EINTR { continue }
                guard ready > 0 else { return false }
                let count = read(descriptor, &chunk, chunk.count)
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { return false }
                received += chunk[..<count]
            }
            return received.starts(with: Array("ready\n".utf8))
        }
    }

    /// Reaps the child; says how it ended ("exited with status 1", "was killed by signal 9").
    private static func waitForExit(_ pid: pid_t) async -> String {
        await onThread {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 {
                guard errno == EINTR else { return "ended (\(String(cString: strerror(errno))))" }
            }
            let signal = status & 0x7f
            return signal == 0 ? "exited with status \((status >> 8) & 0xff)" : "was killed by signal \(signal)"
        }
    }

    private static func onThread<Result: Sendable>(_ body: @escaping @Sendable () -> Result) async -> Result {
        await withCheckedContinuation { continuation in DetachedThread.start { continuation.resume(returning: body()) } }
    }

    /// A flag set once: the daemon asked the child to stop; the child was reaped.
    private final class Flag: Sendable {
        private let flag = Atomic<Bool>(false)
        func set() { flag.store(true, ordering: .relaxed) }
        var isSet: Bool { flag.load(ordering: .relaxed) }
    }
}
