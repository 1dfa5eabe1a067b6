import Foundation
import Testing

/// Out of threads (the unit's `TasksMax=`, a pod's `pids.max`): work the daemon starts per
/// request on a thread of its own (an exec plugin's run, a sink's write) fails that request,
/// and the daemon keeps serving everyone else. The daemon is moved into a pids cgroup of the
/// test's own whose limit is the threads it already has.
@Suite("Thread limit")
struct ThreadLimitTests {
    @Test(
        "with pids.max reached, an exec plugin's request fails with pthread_create's error and the daemon keeps serving",
        .enabled(if: PidsCgroup.isAvailable, "needs a writable pids cgroup hierarchy (root)"))
    func pluginRequestFailsAlone() async throws {
        // Made before the scenario and removed after it, when the daemon has been reaped.
        let cgroup = try PidsCgroup()
        defer { cgroup.remove() }
        try await Scenario.run(identities: { _, provider in
            let minted = try await provider.mint()
            return [
                BrokerDaemon.Identity(
                    name: "from-plugin", tokenFile: "", sourceYAML: PluginTests.execSource("assertion-good.sh", env: ["PLUGIN_TOKEN": minted]))
            ]
        }) { scenario in
            let token = #"{"op":"token","identity":"default","scope":"\#(Scenario.scope)"}"#
            #expect(try await scenario.broker.request(token).ok)  // every pool thread started
            let pid = scenario.broker.process.process.processIdentifier
            try cgroup.confine(pid)
            defer { cgroup.release(pid) }

            let reply = try await scenario.broker.request(#"{"op":"token","identity":"from-plugin","scope":"\#(Scenario.scope)"}"#)
            #expect(reply.errorCode == "assertion_unavailable", "\(reply)")
            #expect(reply.errorMessage.contains("pthread_create"), "\(reply.errorMessage)")
            #expect(try await scenario.broker.request(token).ok, "the daemon stopped serving")
            #expect(try await scenario.broker.request(#"{"op":"ping"}"#).ok)
        }
    }
}

/// A cgroup of the pids controller, on the v1 hierarchy or on v2 where the root delegates it.
final class PidsCgroup {
    private static let hierarchy: String? = {
        if FileManager.default.fileExists(atPath: "/sys/fs/cgroup/pids/cgroup.procs") { return "/sys/fs/cgroup/pids" }
        let v2 = (try? String(contentsOfFile: "/sys/fs/cgroup/cgroup.subtree_control", encoding: .utf8)) ?? ""
        return v2.split(separator: " ").contains { $0.trimmingCharacters(in: .whitespacesAndNewlines) == "pids" } ? "/sys/fs/cgroup" : nil
    }()

    static var isAvailable: Bool { hierarchy != nil && getuid() == 0 }

    let directory: String
    private let root: String

    init() throws {
        guard let hierarchy = Self.hierarchy else { throw HarnessError("no pids cgroup hierarchy") }
        root = hierarchy
        directory = "\(hierarchy)/tbit-pids-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(directory, 0o755) == 0 else { throw HarnessError("mkdir \(directory): \(String(cString: strerror(errno)))") }
    }

    /// Moves `pid` (all its threads) here and allows no more tasks than it has.
    func confine(_ pid: Int32) throws {
        try "\(pid)".write(toFile: "\(directory)/cgroup.procs", atomically: false, encoding: .utf8)
        let current = try String(contentsOfFile: "\(directory)/pids.current", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        try current.write(toFile: "\(directory)/pids.max", atomically: false, encoding: .utf8)
    }

    /// Moves `pid` back to the hierarchy's root, if it still runs.
    func release(_ pid: Int32) {
        try? "\(pid)".write(toFile: "\(root)/cgroup.procs", atomically: false, encoding: .utf8)
    }

    /// Removes the cgroup (empty once every process confined here was released or reaped).
    func remove() {
        rmdir(directory)
    }
}
