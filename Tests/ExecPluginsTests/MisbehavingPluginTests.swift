import ExecPlugins
import Foundation
import Testing
import TokenExchange

/// Each misbehaviour gives its own error, leaves no process behind, and does not affect the
/// next run of a good plugin.
@Suite("A misbehaving plugin")
struct MisbehavingPluginTests {
    @Test("that hangs is killed at the timeout and reaped")
    func hangs() async throws {
        let scratch = Scratch()
        let configuration = Plugins.configuration("hang.sh", environment: ["PID_FILE": scratch.file("pid")], timeout: .seconds(1))
        let error = try #require(await Plugins.error { try await Plugins.fetcher(configuration).fetch() })
        #expect(error.code == .assertionUnavailable)
        #expect(error.isRetryable)
        #expect(error.message.contains("exec plugin 'ci' (\(Plugins.path("hang.sh")))"))
        #expect(error.message.contains("did not answer within 1 s"))
        Processes.expectReaped(scratch.pid("pid"))
        try await Plugins.expectGoodPluginsStillWork()
    }

    @Test("that hangs with a child holding stdout open: the process group kill ends both")
    func hangsWithChild() async throws {
        let scratch = Scratch()
        let configuration = Plugins.configuration(
            "hang-with-child.sh", environment: ["PID_FILE": scratch.file("pid"), "CHILD_PID_FILE": scratch.file("child")], timeout: .seconds(1))
        let error = try #require(
            await Plugins.error {
                try await Plugins.exchanger(configuration).exchange(Plugins.assertion(), for: Plugins.scope)
            })
        #expect(error.code == .upstreamUnavailable)
        #expect(error.isRetryable)
        #expect(error.message.contains("did not answer within 1 s"))
        Processes.expectReaped(scratch.pid("pid"))
        #expect(await Processes.isDead(scratch.pid("child")))
        try await Plugins.expectGoodPluginsStillWork()
    }

    @Test("that answers and exits but leaves a child holding stdout: the answer counts, the child is killed")
    func answersThenLingers() async throws {
        let scratch = Scratch()
        let configuration = Plugins.configuration(
            "answer-then-linger.sh", environment: ["PID_FILE": scratch.file("pid"), "CHILD_PID_FILE": scratch.file("child")])
        let token = try await Plugins.exchanger(configuration).exchange(Plugins.assertion(), for: Plugins.scope)
        #expect(token.value == "lingering")
        Processes.expectReaped(scratch.pid("pid"))
        #expect(await Processes.isDead(scratch.pid("child")))
    }

    @Test("that prints garbage gives a protocol error")
    func printsGarbage() async throws {
        let error = try #require(await Plugins.error { try await Plugins.fetcher(Plugins.configuration("garbage.sh")).fetch() })
        #expect(error.code == .assertionUnavailable)
        #expect(!error.isRetryable)
        #expect(error.message.contains("not a JSON object"))
        #expect(!error.message.contains("Bad Gateway"))
        try await Plugins.expectGoodPluginsStillWork()
    }

    @Test("that prints 10 MiB is killed at the output limit")
    func printsTooMuch() async throws {
        let scratch = Scratch()
        let configuration = Plugins.configuration("flood.sh", environment: ["PID_FILE": scratch.file("pid")])
        let error = try #require(await Plugins.error { try await Plugins.fetcher(configuration).fetch() })
        #expect(error.code == .assertionUnavailable)
        #expect(!error.isRetryable)
        #expect(error.message.contains("printed more than 1048576 bytes"))
        Processes.expectReaped(scratch.pid("pid"))
        try await Plugins.expectGoodPluginsStillWork()
    }

    @Test("that exits non-zero: the status and a sanitized stderr tail, without the token it printed")
    func exitsNonZero() async throws {
        let scratch = Scratch()
        let configuration = Plugins.configuration("fail.sh", environment: ["PID_FILE": scratch.file("pid")])
        let error = try #require(
            await Plugins.error {
                try await Plugins.exchanger(configuration).exchange(Plugins.assertion(), for: Plugins.scope)
            })
        #expect(error.code == .upstreamUnavailable)
        #expect(error.isRetryable)
        #expect(error.message.contains("exited with status 3"))
        #expect(error.message.contains("metadata server answered HTTP 403"))
        #expect(error.message.contains("Authorization: Bearer [redacted]"))
        #expect(!error.message.contains("eyJ"))
        #expect(!error.message.contains("\u{1B}"))
        #expect(!error.message.contains("\n"))
        // Only the tail of stderr is kept.
        #expect(error.message.utf8.count < 800)
        Processes.expectReaped(scratch.pid("pid"))
        try await Plugins.expectGoodPluginsStillWork()
    }

    @Test("that dies of a signal says which")
    func diesOfSignal() async throws {
        let error = try #require(await Plugins.error { try await Plugins.fetcher(Plugins.configuration("crash.sh")).fetch() })
        #expect(error.code == .assertionUnavailable)
        #expect(error.isRetryable)
        #expect(error.message.contains("killed by signal 15 (SIGTERM)"))
        #expect(error.message.contains("about to crash"))
        try await Plugins.expectGoodPluginsStillWork()
    }

    @Test("that answers kind Error: its message, sanitized, and its retryable flag")
    func answersError() async throws {
        let configuration = Plugins.configuration(
            "error-answer.sh",
            environment: [
                "PLUGIN_MESSAGE": "gcloud: not logged in; token was eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
                "PLUGIN_RETRYABLE": "false",
            ])
        let error = try #require(await Plugins.error { try await Plugins.fetcher(configuration).fetch() })
        #expect(error.code == .assertionUnavailable)
        #expect(!error.isRetryable)
        #expect(error.message.contains("reported an error: gcloud: not logged in; token was [redacted]"))
        try await Plugins.expectGoodPluginsStillWork()
    }

    @Test(
        "that answers the wrong document gives an error saying what is wrong",
        arguments: [
            ("", "printed nothing on stdout"),
            (#"["a"]"#, "not a JSON object"),
            (#"{"kind":"AssertionResponse","token":"x"}"#, "without a string 'apiVersion'"),
            (
                #"{"apiVersion":"tokenbroker/v2","kind":"AssertionResponse","token":"x"}"#,
                #"apiVersion "tokenbroker/v2", but the broker speaks "tokenbroker/v1""#
            ),
            (#"{"apiVersion":"tokenbroker/v1","token":"x"}"#, "without a string 'kind'"),
            (#"{"apiVersion":"tokenbroker/v1","kind":"ExchangeResponse","token":"x"}"#, #"kind "ExchangeResponse", expected "AssertionResponse""#),
            (#"{"apiVersion":"tokenbroker/v1","kind":"AssertionResponse"}"#, "without a non-empty string 'token'"),
            (#"{"apiVersion":"tokenbroker/v1","kind":"AssertionResponse","token":42}"#, "without a non-empty string 'token'"),
            (#"{"apiVersion":"tokenbroker/v1","kind":"AssertionResponse","token":"a.b"}"#, "not a JWT"),
            (
                #"{"apiVersion":"tokenbroker/v1","kind":"AssertionResponse","token":"JWT","expiresAt":"tomorrow"}"#,
                "neither an RFC 3339 time nor Unix seconds"
            ),
            (
                #"{"apiVersion":"tokenbroker/v1","kind":"AssertionResponse","token":"JWT","expiresAt":true}"#,
                "neither an RFC 3339 time nor Unix seconds"
            ),
        ])
    func answersWrongDocument(answer: String, expected: String) async throws {
        let configuration = Plugins.configuration(
            "answer.sh", environment: ["PLUGIN_ANSWER": answer.replacingOccurrences(of: "JWT", with: Plugins.jwt())])
        let error = try #require(await Plugins.error { try await Plugins.fetcher(configuration).fetch() })
        #expect(error.code == .assertionUnavailable)
        #expect(!error.isRetryable)
        #expect(error.message.contains(expected), "\(error.message)")
    }

    @Test("that exits non-zero after an Error answer: the plugin's message wins")
    func errorAnswerWithExitStatus() async throws {
        let answer = #"{"apiVersion":"tokenbroker/v1","kind":"Error","message":"quota exceeded","retryable":true}"#
        let error = try #require(
            await Plugins.error {
                try await Plugins.fetcher(Plugins.configuration("answer.sh", environment: ["PLUGIN_ANSWER": answer, "PLUGIN_EXIT": "1"])).fetch()
            })
        #expect(error.isRetryable)
        #expect(error.message.contains("reported an error (exit status 1): quota exceeded"))
    }
}

@Suite("A plugin that cannot be started")
struct UnstartablePluginTests {
    @Test("is missing: the error names the path")
    func missing() async throws {
        let configuration = ExecPluginConfiguration(command: ["/nonexistent/tokenbroker-plugin", "--flag"])
        let error = try #require(await Plugins.error { try await Plugins.fetcher(configuration).fetch() })
        #expect(error.code == .assertionUnavailable)
        #expect(!error.isRetryable)
        #expect(error.message.contains("/nonexistent/tokenbroker-plugin does not exist"))
        try await Plugins.expectGoodPluginsStillWork()
    }

    @Test("is not executable")
    func notExecutable() async throws {
        let scratch = Scratch()
        let path = scratch.file("plugin.sh")
        try "#!/bin/sh\necho hi\n".write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        let error = try #require(
            await Plugins.error {
                try await Plugins.exchanger(ExecPluginConfiguration(command: [path])).exchange(Plugins.assertion(), for: Plugins.scope)
            })
        #expect(error.code == .upstreamUnavailable)
        #expect(!error.isRetryable)
        #expect(error.message.contains("\(path) is not executable"))
    }

    @Test("is a script without a #! line")
    func noShebang() async throws {
        let scratch = Scratch()
        let path = scratch.file("plugin.sh")
        try "echo hi\n".write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
        let error = try #require(await Plugins.error { try await Plugins.fetcher(ExecPluginConfiguration(command: [path])).fetch() })
        #expect(error.message.contains("is not a runnable program"))
    }

    @Test(
        "has a configuration that validate() refuses, naming the field",
        arguments: [
            (ExecPluginConfiguration(command: []), "command"),
            (ExecPluginConfiguration(command: ["gcloud", "auth"]), "command"),
            (ExecPluginConfiguration(command: ["/bin/true"], environment: ["A=B": "x"]), "env"),
            (ExecPluginConfiguration(command: ["/bin/true"], timeout: .zero), "timeoutSeconds"),
            (ExecPluginConfiguration(command: ["/bin/true"], maxOutputBytes: 0), "maxOutputBytes"),
        ])
    func invalidConfiguration(configuration: ExecPluginConfiguration, field: String) async throws {
        #expect(throws: ExecPluginConfiguration.ValidationError.self) { try configuration.validate() }
        do {
            try configuration.validate()
        } catch {
            #expect(error.field == field)
        }
        let runError = try #require(await Plugins.error { try await Plugins.fetcher(configuration).fetch() })
        #expect(runError.message.contains("misconfigured"))
        #expect(!runError.isRetryable)
    }
}
