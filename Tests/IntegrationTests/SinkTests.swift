import Foundation
import Glibc
import Testing

/// `sinks:` — token files for programs that only read files, written by the real daemon
/// against the dev provider and read by real processes.
@Suite("Sinks keep token files fresh, whole and private")
struct SinkTests {
    static let scope = Scenario.scope

    /// A directory for sink files: root's, mode 0755, removed afterwards.
    static func sinkDirectory() throws -> String {
        let directory = try TestEnvironment.temporaryDirectory()
        #expect(chmod(directory, 0o755) == 0)
        return directory
    }

    static func stat(_ path: String) -> Glibc.stat? {
        var info = Glibc.stat()
        return lstat(path, &info) == 0 ? info : nil
    }

    static func read(_ path: String) -> String? {
        try? String(contentsOfFile: path, encoding: .utf8)
    }

    /// A token request that makes the cache exchange again (the dev provider's tokens last an hour).
    static let freshToken = #"{"op":"token","identity":"default","scope":"\#(scope)","minValiditySeconds":4000}"#

    @Test("a reader sees only whole tokens through 200 rotations; onRotate runs once per new token")
    func rotations() async throws {
        let sinks = try Self.sinkDirectory()
        defer { try? FileManager.default.removeItem(atPath: sinks) }
        let path = "\(sinks)/token"
        let log = "\(sinks)/rotations.log"
        let yaml = """
            cache: { minRefreshIntervalSeconds: 0 }
            sinks:
              - identity: default
                scope: "\(Self.scope)"
                path: \(path)
                onRotate: { command: [/bin/sh, -c, "echo rotated >> \(log)"] }
            """
        try await Scenario.run(logLevel: "info", extraYAML: yaml) { scenario in
            try await waitUntil("the first token in \(path)") { Self.read(path)?.isEmpty == false }
            var served: Set<String> = [try #require(Self.read(path))]
            let reader = try ChildProcess(
                executable: TestEnvironment.python,
                arguments: ["\(TestEnvironment.fixtures)/python/sink_reader.py", path, "\(sinks)/seen", "\(sinks)/ready"],
                logDirectory: sinks, name: "reader")
            do {
                try await waitUntil("the reader to start") { FileManager.default.fileExists(atPath: "\(sinks)/ready") }
                for round in 0..<200 {
                    let token = try #require(try await scenario.broker.request(Self.freshToken).token, "round \(round)")
                    #expect(!served.contains(token), "round \(round): a new token")
                    served.insert(token)
                    try await waitUntil("round \(round)'s token in the file") { Self.read(path) == token }
                }
            } catch {
                await reader.stop()
                throw error
            }
            await reader.stop()
            try await waitUntil("the reader's report") { FileManager.default.fileExists(atPath: "\(sinks)/seen") }
            let report = try String(contentsOfFile: "\(sinks)/seen", encoding: .utf8).split(separator: "\n")
            let seen = report.dropFirst().map { line in
                String(
                    decoding: stride(from: 0, to: line.count, by: 2).map { offset -> UInt8 in
                        let start = line.index(line.startIndex, offsetBy: offset)
                        return UInt8(line[start..<line.index(start, offsetBy: 2)], radix: 16)!
                    }, as: UTF8.self)
            }
            #expect(seen.count > 20, "the reader saw many rotations (reads: \(report.first ?? ""), distinct: \(seen.count))")
            // Counted, not listed: a failure must not print token text.
            let torn = seen.filter { !served.contains($0) }.map(\.count)
            #expect(torn.count == 0, "every read was a whole token the broker served; \(torn.count) were not (lengths \(torn))")

            try await waitUntil("an onRotate run for every token") { (Self.read(log) ?? "").split(separator: "\n").count >= served.count }
            // Stopped first: nothing can add a line after the count.
            #expect(await scenario.broker.stop() == 0)
            let lines = (Self.read(log) ?? "").split(separator: "\n").count
            #expect(lines == served.count, "one onRotate run per new token: \(lines) runs for \(served.count) tokens")
            let info = try #require(Self.stat(path))
            #expect(info.st_mode & 0o7777 == 0o440 && info.st_uid == getuid() && info.st_gid == getgid(), "default mode 0440, the daemon's owner")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: sinks).filter { $0.hasSuffix(".tmp") }
            #expect(leftovers.isEmpty, "no temporary files left: \(leftovers)")
        }
    }

    @Test("each format's content, mode and owner are exactly as configured")
    func formatsModesOwners() async throws {
        let sinks = try Self.sinkDirectory()
        defer { try? FileManager.default.removeItem(atPath: sinks) }
        let nobody = try #require(getpwnam("nobody")).pointee.pw_uid
        let nogroup = try #require(getgrnam("nogroup")).pointee.gr_gid
        let daemon = try #require(getpwnam("daemon")).pointee
        let yaml = """
            sinks:
              - { scope: "\(Self.scope)", path: \(sinks)/token, owner: "nobody:nogroup", mode: "0640" }
              - { scope: "\(Self.scope)", path: \(sinks)/header, format: header, owner: daemon, mode: "0400" }
              - { scope: "\(Self.scope)", path: \(sinks)/json, format: json }
              - { scope: "\(Self.scope)", path: \(sinks)/env, format: env, owner: "\(nobody)" }
            """
        try await Scenario.run(logLevel: "info", extraYAML: yaml) { scenario in
            for name in ["token", "header", "json", "env"] {
                try await waitUntil("\(name) written") { Self.read("\(sinks)/\(name)")?.isEmpty == false }
            }
            let token = try #require(try await scenario.broker.request(#"{"op":"token","identity":"default","scope":"\#(Self.scope)"}"#).token)
            #expect(Self.read("\(sinks)/token") == token, "one exchange: the file holds the token socket callers get")
            #expect(Self.read("\(sinks)/header") == "Authorization: Bearer \(token)\n")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(sinks)/json"))) as? [String: Any])
            #expect(
                json["token"] as? String == token && json["ok"] as? Bool == true && json["identity"] as? String == "default"
                    && json["expiresOn"] is Int)
            let env = try #require(Self.read("\(sinks)/env"))
            #expect(env.hasPrefix("ACCESS_TOKEN=\(token)\nACCESS_TOKEN_EXPIRES_ON="), "\(env.count) bytes")
            let expected: [(String, UInt16, uid_t, gid_t)] = [
                ("token", 0o640, nobody, nogroup), ("header", 0o400, daemon.pw_uid, daemon.pw_gid), ("json", 0o440, getuid(), getgid()),
                ("env", 0o440, nobody, try #require(getpwuid(nobody)).pointee.pw_gid),
            ]
            for (name, mode, uid, gid) in expected {
                let info = try #require(Self.stat("\(sinks)/\(name)"))
                #expect(UInt16(info.st_mode & 0o7777) == mode, "\(name): mode 0\(String(info.st_mode & 0o7777, radix: 8))")
                #expect(info.st_uid == uid && info.st_gid == gid, "\(name): owner \(info.st_uid):\(info.st_gid), expected \(uid):\(gid)")
            }
            // The file is at its path before the writer records it (the directory's fsync comes between).
            var status = try await scenario.broker.request(#"{"op":"status"}"#)
            var listed: [[String: Any]] = []
            try await waitUntil("status to show every sink written") {
                status = try await scenario.broker.request(#"{"op":"status"}"#)
                listed = ((status["status"] as? [String: Any])?["sinks"] as? [[String: Any]]) ?? []
                return listed.count == 4 && listed.allSatisfy { $0["lastWrite"] != nil }
            }
            #expect(
                listed.compactMap { $0["path"] as? String }.sorted() == ["env", "header", "json", "token"].map { "\(sinks)/\($0)" },
                "status lists the sinks")
            let sinkLog = scenario.broker.process.stderr.split(separator: "\n").filter { $0.contains("sink") }.joined(separator: "\n")
            #expect(listed.allSatisfy { $0["lastWrite"] is Int && $0["expiresOn"] is Int && $0["lastError"] == nil }, "\(listed)\n\(sinkLog)")
            #expect(!"\(status.object)".contains(token), "status never shows the token")
            #expect(!scenario.broker.process.stderr.contains(token), "the log never shows the token")
        }
    }

    @Test("a token that cannot be replaced before it expires is removed with its file; the file comes back with the next token")
    func expiredTokenRemoved() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(chmod(directory, 0o755) == 0)
        let path = "\(directory)/token"
        // Eight-second tokens: the cache refreshes at half their life, the sink wants 2 s left.
        let provider = try await DevProvider(directory: directory, accessTokenLifetime: 8)
        let broker: BrokerDaemon
        do {
            broker = try await BrokerDaemon(
                directory: directory, provider: provider, identities: [.init(name: "default", tokenFile: provider.endpoints.tokenFile)],
                logLevel: "info",
                extraYAML: "sinks:\n  - { scope: \"\(Self.scope)\", path: \(path), refreshBeforeExpirySeconds: 2 }\n")
        } catch {
            await provider.stop()
            throw error
        }
        do {
            try await waitUntil("the first token") { FileManager.default.fileExists(atPath: path) }
            try await provider.setFault(status: 400, count: 1_000_000)
            try await waitUntil("the expired token's file to be removed") { !FileManager.default.fileExists(atPath: path) }
            let status = try await broker.request(#"{"op":"status"}"#)
            let sink = try #require(((status["status"] as? [String: Any])?["sinks"] as? [[String: Any]])?.first)
            // Removed because the token expired (said once, in the log); `lastError` is the latest
            // failure, which on a loaded machine may already be the next failed exchange.
            #expect(broker.process.stderr.contains("sink token expired; file removed"))
            let code = (sink["lastError"] as? [String: Any])?["code"] as? String
            #expect(code == "token_expired" || code == "token_unavailable", "\(sink)")
            #expect(sink["expiresOn"] == nil, "no token, no expiry: \(sink)")
            try await provider.setFault(status: 400, count: 0)
            try await waitUntil("a new token in the file") { FileManager.default.fileExists(atPath: path) }
        } catch {
            _ = await broker.stop()
            await provider.stop()
            throw error
        }
        #expect(await broker.stop() == 0)
        await provider.stop()
    }
}
