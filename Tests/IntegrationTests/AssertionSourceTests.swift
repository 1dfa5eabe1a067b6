import Foundation
import Testing

/// Assertions from elsewhere than a token file: a CI job's OIDC token service and a
/// cloud metadata server (local stand-ins that check what the broker sends), and the
/// `none` exchange that serves the assertion itself.
@Suite("Assertion sources beyond files")
struct AssertionSourceTests {
    /// tests/Fixtures/python/oidc_stand_in.py, serving whatever the test writes to `tokenFile`.
    final class StandIn: @unchecked Sendable {
        let process: ChildProcess
        let port: Int
        let tokenFile: String
        let logFile: String

        init(mode: String, directory: String, bearer: String? = nil) async throws {
            tokenFile = "\(directory)/\(mode)-token"
            logFile = "\(directory)/\(mode)-requests.log"
            let portFile = "\(directory)/\(mode)-port"
            try "".write(toFile: tokenFile, atomically: true, encoding: .utf8)
            process = try ChildProcess(
                executable: TestEnvironment.python,
                arguments: ["\(TestEnvironment.fixtures)/python/oidc_stand_in.py", mode, tokenFile, portFile, logFile] + (bearer.map { [$0] } ?? []),
                logDirectory: directory, name: "stand-in-\(mode)")
            let process = self.process
            try await waitUntil("the \(mode) stand-in to listen") {
                guard process.isRunning else { throw HarnessError("stand-in exited: \(process.stderr)") }
                return FileManager.default.fileExists(atPath: portFile)
            }
            port = Int(try String(contentsOfFile: portFile, encoding: .utf8)) ?? 0
        }

        /// The requests it received, oldest first.
        func requests() throws -> [[String: Any]] {
            let text = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }

        func stop() async { _ = await process.stop() }

        /// Runs `body` with a stand-in, stopping it afterwards whatever happens.
        static func with(mode: String, directory: String, bearer: String? = nil, _ body: (StandIn) async throws -> Void) async throws {
            let standIn = try await StandIn(mode: mode, directory: directory, bearer: bearer)
            do {
                try await body(standIn)
            } catch {
                await standIn.stop()
                throw error
            }
            await standIn.stop()
        }
    }

    static let audience = "api://AzureADTokenExchange"

    @Test("github-actions: the broker sends the runner's bearer token and the configured audience, and exchanges the job's token")
    func githubActions() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bearer = "runner-request-token-\(UUID().uuidString)"
        try await StandIn.with(mode: "github", directory: directory, bearer: bearer) { standIn in
            var environment = ProcessInfo.processInfo.environment
            environment["ACTIONS_ID_TOKEN_REQUEST_URL"] = "http://127.0.0.1:\(standIn.port)/token?api-version=2.0"
            environment["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = bearer
            try await Scenario.run(
                identities: { _, provider in
                    [
                        BrokerDaemon.Identity(
                            name: "ci", tokenFile: provider.endpoints.tokenFile, sourceYAML: "{ githubActions: { audience: \"\(Self.audience)\" } }")
                    ]
                },
                allowInsecureLoopback: true, environment: environment
            ) { scenario in
                try await scenario.provider.mint().write(toFile: standIn.tokenFile, atomically: true, encoding: .utf8)
                let reply = try await scenario.broker.request(#"{"op":"token","identity":"ci","scope":"https://storage.azure.com/.default"}"#)
                #expect(reply.ok, "\(reply)")
                let requests = try standIn.requests()
                #expect(requests.count == 1)
                #expect(requests.first?["authorized"] as? Bool == true, "the broker must send Authorization: bearer <ACTIONS_ID_TOKEN_REQUEST_TOKEN>")
                let query = requests.first?["query"] as? [String: String]
                #expect(query?["audience"] == Self.audience)
                #expect(query?["api-version"] == "2.0", "the runner's own query parameters are kept")
                // The runner's bearer token is a secret too: never logged.
                #expect(!scenario.broker.process.stderr.contains(bearer))
            }
        }
    }

    @Test("github-actions without the runner's variables is a configuration error naming them")
    func githubActionsNeedsTheRunner() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "identities: [ { name: ci, source: { githubActions: {} }, exchange: { none: {} } } ]\n".write(
            toFile: "\(directory)/config.yaml", atomically: true, encoding: .utf8)
        let result = try await runCommand(
            TestEnvironment.daemonPath, ["check-config", "--config", "\(directory)/config.yaml"], environment: ["PATH": "/usr/bin:/bin"])
        #expect(result.status == 78)
        #expect(
            result.stderr.contains("identities[0].source.githubActions") && result.stderr.contains("ACTIONS_ID_TOKEN_REQUEST_URL"), "\(result.stderr)"
        )
    }

    @Test(
        "gcp-metadata: Metadata-Flavor and the audience are sent; a failing metadata server gives a specific error and other identities keep working")
    func gcpMetadata() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await StandIn.with(mode: "gcp", directory: directory) { standIn in
            try await Scenario.run(
                identities: { _, provider in
                    [
                        BrokerDaemon.Identity(
                            name: "gce", tokenFile: provider.endpoints.tokenFile,
                            sourceYAML: "{ gcpMetadata: { audience: \"\(Self.audience)\", baseURL: \"http://127.0.0.1:\(standIn.port)\" } }"),
                        BrokerDaemon.Identity(
                            name: "broken", tokenFile: provider.endpoints.tokenFile,
                            sourceYAML: "{ gcpMetadata: { audience: x, baseURL: \"http://127.0.0.1:\(standIn.port)/wrong\" } }"),
                    ]
                },
                allowInsecureLoopback: true
            ) { scenario in
                try await scenario.provider.mint().write(toFile: standIn.tokenFile, atomically: true, encoding: .utf8)
                let broken = try await scenario.broker.request(#"{"op":"token","identity":"broken","scope":"https://storage.azure.com/.default"}"#)
                #expect(broken.errorCode == "assertion_unavailable")
                #expect(broken.errorMessage.contains("answered HTTP 404"), "\(broken)")
                let reply = try await scenario.broker.request(#"{"op":"token","identity":"gce","scope":"https://storage.azure.com/.default"}"#)
                #expect(reply.ok, "\(reply)")
                let request = try #require(try standIn.requests().last)
                #expect(request["authorized"] as? Bool == true)
                #expect((request["query"] as? [String: String]) == ["audience": Self.audience, "format": "full"])
            }
        }
    }

    @Test("none: the assertion itself is served for its own audience, and refused for any other scope")
    func passthrough() async throws {
        try await Scenario.run(identities: { _, provider in
            [BrokerDaemon.Identity(name: "raw", tokenFile: provider.endpoints.tokenFile, exchangeYAML: "{ none: {} }")]
        }) { scenario in
            let reply = try await scenario.broker.request(#"{"op":"token","identity":"raw","scope":"\#(Self.audience)"}"#)
            #expect(reply.ok, "\(reply)")
            let file = try String(contentsOfFile: scenario.provider.endpoints.tokenFile, encoding: .utf8).trimmingCharacters(
                in: .whitespacesAndNewlines)
            #expect(reply.token == file)
            let other = try await scenario.broker.request(#"{"op":"token","identity":"raw","scope":"https://storage.azure.com/.default"}"#)
            #expect(other.errorCode == "upstream_rejected")
            #expect(other.errorMessage.contains("its audience is \(Self.audience)"), "\(other)")
            #expect(try await scenario.provider.stats().tokenRequests == 0)
        }
    }
}
