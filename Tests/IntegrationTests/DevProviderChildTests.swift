import Foundation
import Testing

/// `tokenbrokerd --dev` runs the dev issuer and token service as its child,
/// `tokenbroker-dev-provider`: the two live and die together.
@Suite("Dev mode's provider process")
struct DevProviderChildTests {
    /// Starts `tokenbrokerd --dev` in a fresh directory (through `wrapper`, a command that execs
    /// the daemon in the same process) and waits for its banner.
    private func startDevBroker(
        in directory: String, wrapper: [String] = [], environment: [String: String]? = nil
    ) async throws -> ChildProcess {
        let command = wrapper + [TestEnvironment.daemonPath, "--dev", "--state-dir", "\(directory)/state"]
        let broker = try ChildProcess(
            executable: command[0], arguments: Array(command.dropFirst()), environment: environment, logDirectory: directory, name: "dev")
        do {
            try await waitUntil("the dev broker's banner") {
                guard broker.isRunning else { throw HarnessError("the dev broker exited: \(broker.stderr)") }
                return broker.stdout.contains("Stop with Ctrl-C")
            }
        } catch {
            await broker.stop()
            throw error
        }
        return broker
    }

    /// The pids whose parent is `parent` (from /proc/PID/stat).
    private func children(of parent: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let end = stat.range(of: ") ", options: .backwards)
            else { return false }
            let fields = stat[end.upperBound...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == parent
        }
    }

    private func providerChild(of broker: ChildProcess) throws -> pid_t {
        let found = children(of: broker.process.processIdentifier).filter {
            ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\($0)/exe")) ?? "").hasSuffix("/tokenbroker-dev-provider")
        }
        return try #require(found.first, "no tokenbroker-dev-provider child of the dev broker")
    }

    @Test("a dev broker killed with SIGKILL takes its provider along: no orphan keeps the ports and rotates tokens")
    func providerFollowsAKilledBroker() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broker = try await startDevBroker(in: directory)
        let provider: pid_t
        do { provider = try providerChild(of: broker) } catch {
            await broker.stop()
            throw error
        }
        #expect(!hasExited(provider), "the check does not see the running provider")
        broker.signal(SIGKILL)
        await broker.stop()
        do {
            try await waitUntil("the provider to exit after its broker") { hasExited(provider) }
        } catch {
            kill(provider, SIGKILL)
            throw error
        }
    }

    @Test("a provider that dies stops the dev broker, and the broker says why")
    func brokerStopsWithItsProvider() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broker = try await startDevBroker(in: directory)
        do {
            kill(try providerChild(of: broker), SIGKILL)
            try await waitUntil("the dev broker to exit") { !broker.isRunning }
        } catch {
            await broker.stop()
            throw error
        }
        let status = await broker.stop()
        #expect(status != 0)
        #expect(broker.stderr.contains("the dev provider was killed by signal 9"), "\(broker.stderr)")
    }

    @Test("Ctrl-C at the terminal (SIGINT to the process group) stops the dev broker cleanly, and its provider with it")
    func groupInterruptIsACleanStop() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A process group of its own, as a shell gives a foreground job (the same pid: setpgid, then exec).
        let broker = try await startDevBroker(
            in: directory, wrapper: ["/usr/bin/python3", "-c", "import os, sys; os.setpgid(0, 0); os.execv(sys.argv[1], sys.argv[1:])"])
        let provider: pid_t
        do { provider = try providerChild(of: broker) } catch {
            await broker.stop()
            throw error
        }
        kill(-broker.process.processIdentifier, SIGINT)
        do {
            try await waitUntil("the dev broker to exit") { !broker.isRunning }
            try await waitUntil("the provider to exit") { hasExited(provider) }
        } catch {
            await broker.stop()
            kill(provider, SIGKILL)
            throw error
        }
        #expect(await broker.stop() == 0, "\(broker.stderr)")
        #expect(!broker.stderr.contains("cannot go on without it"), "\(broker.stderr)")
    }

    @Test("the provider gets none of the daemon's other descriptors and none of systemd's variables")
    func providerInheritsNothingOfTheDaemons() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let marker = "\(directory)/inherited-marker"
        #expect(FileManager.default.createFile(atPath: marker, contents: Data("x".utf8)))
        var environment = ProcessInfo.processInfo.environment
        environment["LISTEN_FDNAMES"] = "marker"
        environment["WATCHDOG_USEC"] = "0"
        // fd 7 open without close-on-exec in the daemon, as systemd passes its descriptors.
        let broker = try await startDevBroker(
            in: directory, wrapper: ["/bin/sh", "-c", "exec 7<\"$0\"; exec \"$@\"", marker], environment: environment)
        do {
            let provider = try providerChild(of: broker)
            let daemonFiles = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(broker.process.processIdentifier)/fd").compactMap {
                try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(broker.process.processIdentifier)/fd/\($0)")
            }
            #expect(daemonFiles.contains(marker), "the daemon did not get the marker descriptor: \(daemonFiles)")
            let providerFiles = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(provider)/fd").compactMap {
                try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(provider)/fd/\($0)")
            }
            #expect(!providerFiles.contains(marker), "the provider inherited the daemon's descriptor: \(providerFiles)")
            let variables = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(provider)/environ")).split(separator: 0).map {
                String(decoding: $0, as: UTF8.self)
            }
            #expect(!variables.contains { $0.hasPrefix("LISTEN_FDNAMES=") || $0.hasPrefix("WATCHDOG_USEC=") }, "\(variables)")
        } catch {
            await broker.stop()
            throw error
        }
        #expect(await broker.stop() == 0, "\(broker.stderr)")
    }

    @Test("without tokenbroker-dev-provider beside it, --dev says which file it needs")
    func missingProviderIsNamed() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let alone = "\(directory)/bin/tokenbrokerd"
        try FileManager.default.createDirectory(atPath: "\(directory)/bin", withIntermediateDirectories: true)
        // Copied by cp, not by this process: a child another test forks while this process
        // holds the copy open for writing inherits that descriptor, and exec then fails with
        // ETXTBSY ("Text file busy"; seen once in CI).
        let copied = try await runCommand("/bin/cp", [TestEnvironment.daemonPath, alone])
        #expect(copied.status == 0, "\(copied.stderr)")
        let result = try await runCommand(alone, ["--dev", "--state-dir", "\(directory)/state"])
        #expect(result.status != 0)
        #expect(
            result.stderr.contains("dev mode needs tokenbroker-dev-provider next to tokenbrokerd")
                && result.stderr.contains("\(directory)/bin/tokenbroker-dev-provider"), "\(result.stderr)")
    }
}
