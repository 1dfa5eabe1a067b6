import Foundation
import Testing

/// No token or assertion text appears in the logs at any level.
@Suite("Log hygiene")
struct LogHygieneTests {
    @Test("trace-level logs of a busy session contain no token and no assertion")
    func noSecretsInLogs() async throws {
        let intruder = "system:serviceaccount:default:intruder"
        var secrets: [String] = []
        var logs = ""
        try await Scenario.run(
            identities: { directory, provider in
                let wrong = try await provider.mint(sub: intruder)
                let expired = try await provider.mint(ttlSeconds: 60, issuedAtOffsetSeconds: -600)
                secrets += [wrong, expired]
                return [
                    .init(name: "wrong", tokenFile: try Scenario.writeTokenFile(wrong, in: directory, name: "wrong")),
                    .init(name: "stale", tokenFile: try Scenario.writeTokenFile(expired, in: directory, name: "stale")),
                ]
            }, logLevel: "trace"
        ) { scenario in
            secrets.append(try String(contentsOfFile: scenario.provider.endpoints.tokenFile, encoding: .utf8))
            for scope in ["https://storage.azure.com/.default", "https://vault.azure.net/.default"] {
                secrets.append(try #require(await scenario.broker.request(#"{"op":"token","identity":"default","scope":"\#(scope)"}"#).token))
            }
            _ = try await scenario.provider.rotate()
            try await scenario.provider.setFault(status: 500, count: 3)
            _ = try await scenario.broker.request(#"{"op":"token","identity":"default","scope":"api://fault/.default"}"#)
            _ = try await scenario.broker.request(#"{"op":"token","scope":"x","identity":"wrong"}"#)
            _ = try await scenario.broker.request(#"{"op":"token","scope":"x","identity":"stale"}"#)
            secrets.append(try String(contentsOfFile: scenario.provider.endpoints.tokenFile, encoding: .utf8))
            _ = await scenario.broker.stop()
            await scenario.provider.stop()
            logs = scenario.broker.process.stderr + scenario.provider.process.stderr
        }
        #expect(logs.contains("token obtained"), "the logs were captured")
        for secret in secrets.map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }) {
            let parts = secret.split(separator: ".")
            #expect(parts.count == 3)
            // Neither the whole JWT nor its signature or payload may appear.
            #expect(!logs.contains(secret))
            for part in parts.dropFirst() { #expect(!logs.contains(part), "a JWT part leaked into the logs") }
        }
    }

    @Test("claims the token file's writer chose cannot forge a log line or reach a terminal raw")
    func claimsAreShownOnOneLine() async throws {
        let forged = "x\n2026-12-07T00:00:00+0000 critical tokenbrokerd: forged line \u{1b}[31mred"
        var logs = ""
        var message = ""
        try await Scenario.run(
            identities: { directory, provider in
                [.init(name: "odd", tokenFile: try Scenario.writeTokenFile(try await provider.mint(sub: forged), in: directory, name: "odd"))]
            }, logLevel: "info"
        ) { scenario in
            message = try await scenario.broker.request(#"{"op":"token","scope":"\#(Scenario.scope)","identity":"odd"}"#).errorMessage
            _ = await scenario.broker.stop()
            logs = scenario.broker.process.stderr
        }
        #expect(logs.contains("picked up assertion") && message.contains("forged line"), "the claim was logged and named: \(message)")
        #expect(!logs.split(separator: "\n").contains { $0.hasPrefix("2026-12-07T00:00:00+0000 critical") }, "a forged log line")
        #expect(!logs.contains("\u{1b}") && !message.contains("\u{1b}") && !message.contains("\n"), "control characters passed through")
    }
}
