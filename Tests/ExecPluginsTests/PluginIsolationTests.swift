import ExecPlugins
import Foundation
import Testing
import TokenExchange

/// What a plugin sees of the daemon: a scrubbed environment, no inherited descriptors,
/// default signal handling, a process group of its own.
@Suite("A plugin's surroundings")
struct PluginIsolationTests {
    private func exchangeToken(_ fixture: String, environment: [String: String] = [:]) async throws -> String {
        try await Plugins.exchanger(Plugins.configuration(fixture, environment: environment)).exchange(Plugins.assertion(), for: Plugins.scope).value
    }

    /// The plugin's `env`, less the PWD that sh sets for itself.
    private func pluginEnvironment(_ environment: [String: String]) async throws -> [String] {
        let token = try await exchangeToken("env.sh", environment: environment)
        let text = String(decoding: try #require(Data(base64Encoded: token)), as: UTF8.self)
        return text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("PWD=") }.sorted()
    }

    @Test("the environment holds only PATH and the configured variables")
    func scrubbedEnvironment() async throws {
        setenv("TOKENBROKER_TEST_DAEMON_SECRET", "must-not-leak", 1)
        let seen = try await pluginEnvironment(["PLUGIN_REGION": "westeurope", "PLUGIN_EMPTY": ""])
        #expect(seen == ["PATH=/usr/local/bin:/usr/bin:/bin", "PLUGIN_EMPTY=", "PLUGIN_REGION=westeurope"])
    }

    @Test("a configured PATH replaces the default one")
    func configuredPath() async throws {
        let seen = try await pluginEnvironment(["PATH": "/opt/plugin/bin:/usr/bin:/bin"])
        #expect(seen == ["PATH=/opt/plugin/bin:/usr/bin:/bin"])
    }

    @Test("no signal is blocked or ignored, and the plugin leads its own process group")
    func defaultSignals() async throws {
        // Ignored dispositions survive exec unless reset: ignore one here to see it reset.
        let previous = signal(SIGUSR2, SIG_IGN)
        defer { signal(SIGUSR2, previous) }
        let token = try await exchangeToken("signals.sh")
        let fields = token.split(separator: " ")
        let blocked = try #require(fields.firstIndex(of: "SigBlk:").flatMap { UInt64(fields[$0 + 1], radix: 16) })
        let ignored = try #require(fields.firstIndex(of: "SigIgn:").flatMap { UInt64(fields[$0 + 1], radix: 16) })
        #expect(blocked == 0, "\(token)")
        // Signals 32 and 33 are glibc's own (SIGCANCEL, SIGSETXID): sigfillset leaves them out,
        // so no spawn can reset them, and no program but glibc uses them.
        let glibcInternal: UInt64 = 0b11 << 31
        #expect(ignored & ~glibcInternal == 0, "\(token)")
        let pgrp = try #require(fields.firstIndex(of: "Pgrp:").map { fields[$0 + 1] })
        let pid = try #require(fields.firstIndex(of: "Pid:").map { fields[$0 + 1] })
        #expect(pgrp == pid)
    }

    @Test("descriptors the daemon opened do not reach the plugin")
    func noInheritedDescriptors() async throws {
        // Deliberately without O_CLOEXEC, as careless code in the daemon might, and at a
        // number no shell uses for itself.
        let opened = open("/dev/null", O_RDONLY)
        try #require(opened >= 0)
        defer { close(opened) }
        let leaked = fcntl(opened, F_DUPFD, 200)
        try #require(leaked >= 200)
        defer { close(leaked) }
        let listed = try await exchangeToken("fds.sh").split(separator: " ").compactMap { Int32($0) }
        #expect(listed.contains(0) && listed.contains(1) && listed.contains(2))
        #expect(!listed.contains(leaked), "\(listed)")
        #expect(!listed.contains(opened) || opened < 20, "\(listed)")
    }

    @Test("cancelling the caller kills the plugin and reaps it")
    func cancellation() async throws {
        let scratch = Scratch()
        let configuration = Plugins.configuration("hang.sh", environment: ["PID_FILE": scratch.file("pid")], timeout: .seconds(120))
        let task = Task { await Plugins.error { try await Plugins.fetcher(configuration).fetch() } }
        for _ in 0..<1000 where scratch.pid("pid") == nil { try await Task.sleep(for: .milliseconds(10)) }
        let pid = try #require(scratch.pid("pid"))
        task.cancel()
        let error = try #require(await task.value)
        #expect(error.message.contains("cancelled"))
        Processes.expectReaped(pid)
    }

    @Test("concurrent runs each get their own answer")
    func concurrentRuns() async throws {
        let tokens = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for index in 0..<8 {
                group.addTask {
                    let configuration = Plugins.configuration("exchange-good.sh", environment: ["PLUGIN_TOKEN": "token-\(index)"])
                    return (index, try await Plugins.exchanger(configuration).exchange(Plugins.assertion(), for: Plugins.scope).value)
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect(tokens.count == 8)
        for (index, token) in tokens { #expect(token == "token-\(index)") }
    }
}
