import Foundation
import OffPool
import Testing

/// JournalLogHandler's records as journald receives them. A child (Tests/JournalLogWriter) logs
/// through the handler, so the real `sd_journal_sendv`, in a mount namespace of its own whose
/// /run/systemd/journal/socket is journal_socket.py's datagram socket; that script parses each
/// datagram field by field. The test process cannot unshare itself (Swift's runtime is
/// multithreaded); the namespace and its tmpfs vanish with the script.
@Suite struct JournalLogHandlerRecords {
    struct Call: Encodable {
        var label = "tb-journal-test"
        var handlerLevel = "trace"
        var level = "info"
        var message: String
        var handlerMetadata: [String: String] = [:]
        var metadata: [String: String] = [:]
    }

    struct Field: Decodable, Equatable {
        let name: String
        let value: String  // base64 of the bytes sent
        let form: String  // "text" (`NAME=value`) or "length-prefixed"
        var bytes: [UInt8] { Data(base64Encoded: value).map { Array($0) } ?? [] }
        var text: String { String(decoding: bytes, as: UTF8.self) }
    }

    struct Result: Decodable {
        let status: Int
        let site: String
        let records: [[Field]]
    }

    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The records the writer's calls produced, and where its log call is (`file`, `function`, `line`).
    static func journal(_ calls: [Call]) async throws -> (records: [[Field]], site: [String: String]) {
        let environment = ProcessInfo.processInfo.environment
        let writer = "\(environment["TOKENBROKER_BIN_DIR"] ?? "\(packageRoot)/.build/debug")/journal-log-writer"
        let python = environment["TOKENBROKER_PYTHON"] ?? "/usr/bin/python3"
        let plan = try JSONEncoder().encode(calls)
        let output = try await offPool { () throws -> Data in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
            process.arguments = ["--mount", "--propagation", "private", python, "\(packageRoot)/Tests/SystemdSupportTests/journal_socket.py", writer]
            let input = Pipe(), output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            process.standardError = output
            try process.run()
            try input.fileHandleForWriting.write(contentsOf: plan)
            try input.fileHandleForWriting.close()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return data
        }
        let text = String(decoding: output, as: UTF8.self)
        let result = try #require(try? JSONDecoder().decode(Result.self, from: output), "the reader said: \(text)")
        #expect(result.status == 0, "the writer exited with \(result.status)")
        let site = try #require(try? JSONDecoder().decode([String: String].self, from: Data(result.site.utf8)), "\(result.site)")
        return (result.records, site)
    }

    static func value(_ name: String, in record: [Field]) -> String? { record.first { $0.name == name }?.text }

    @Test("one record: message, priority, code location, identifier and each metadata field, call metadata over the handler's")
    func fieldsOfOneRecord() async throws {
        let call = Call(
            level: "warning", message: "token exchange failed",
            handlerMetadata: ["token.identity": "payroll", "token.scope": "replaced"],
            metadata: [
                "token.scope": "https://vault.azure.net/.default", "peer.uid": "1000", "peer.pid": "42",
                "upstream.codes": "700016", "upstream.trace_id": "c0ffee", "error.code": "upstream_rejected",
            ])
        let (records, site) = try await Self.journal([call])
        let record = try #require(records.count == 1 ? records[0] : nil, "\(records)")
        let sent = record.map { "\($0.name)=\($0.text)" }.sorted()
        #expect(
            sent == [
                "CODE_FILE=\(site["file"] ?? "?")", "CODE_FUNC=\(site["function"] ?? "?")", "CODE_LINE=\(site["line"] ?? "?")",
                "MESSAGE=token exchange failed", "PEER_PID=42", "PEER_UID=1000", "PRIORITY=4", "SYSLOG_IDENTIFIER=tb-journal-test",
                "TOKENBROKER_ERROR_CODE=upstream_rejected", "TOKENBROKER_IDENTITY=payroll",
                "TOKENBROKER_SCOPE=https://vault.azure.net/.default", "TRACE_ID=c0ffee", "UPSTREAM_CODES=700016",
            ])
        #expect(record.allSatisfy { $0.form == "text" })
        #expect(site["file"] == "journal_log_writer/main.swift" && site["function"] == "write(_:)")
    }

    @Test("each level's priority, and the handler's level drops what is below it")
    func levelsAndFiltering() async throws {
        let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
        let priorities = ["trace": "7", "debug": "7", "info": "6", "notice": "5", "warning": "4", "error": "3", "critical": "2"]
        let calls = levels.flatMap { handler in levels.map { Call(handlerLevel: handler, level: $0, message: "\(handler) \($0)") } }
        let (records, _) = try await Self.journal(calls)
        let expected = levels.enumerated().flatMap { h, handler in levels[h...].map { "\(handler) \($0)" } }
        #expect(records.compactMap { Self.value("MESSAGE", in: $0) } == expected)
        for record in records {
            let level = Self.value("MESSAGE", in: record)?.split(separator: " ").last.map(String.init) ?? ""
            #expect(Self.value("PRIORITY", in: record) == priorities[level], "\(level)")
        }
    }

    @Test("a value with a newline goes length-prefixed, byte for byte; one without stays `NAME=value`")
    func multiLineAndBinary() async throws {
        let binary = "nul \u{0} bell \u{7} del \u{7F} é\r\nend\n"
        let calls = [
            Call(message: "first line\nsecond line"),
            Call(message: binary, metadata: ["detail": "a\nb", "plain": "tab\there"]),
            Call(message: "no newline: \u{0}\u{1}é"),
        ]
        let (records, _) = try await Self.journal(calls)
        try #require(records.count == 3, "\(records)")
        let first = try #require(records[0].first { $0.name == "MESSAGE" })
        #expect(first.form == "length-prefixed" && first.text == "first line\nsecond line")
        let second = try #require(records[1].first { $0.name == "MESSAGE" })
        #expect(second.form == "length-prefixed" && second.bytes == Array(binary.utf8))
        let field = { (name: String, value: String, form: String) in Field(name: name, value: Data(value.utf8).base64EncodedString(), form: form) }
        #expect(records[1].first { $0.name == "TOKENBROKER_DETAIL" } == field("TOKENBROKER_DETAIL", "a\nb", "length-prefixed"))
        #expect(records[1].first { $0.name == "TOKENBROKER_PLAIN" } == field("TOKENBROKER_PLAIN", "tab\there", "text"))
        let third = try #require(records[2].first { $0.name == "MESSAGE" })
        #expect(third.form == "text" && third.bytes == Array("no newline: \u{0}\u{1}é".utf8))
    }

    /// journald keeps a field only if its name is 1–64 of A–Z, 0–9 and `_`, not starting with a
    /// digit or `_` (journal_field_valid); any other it drops without a word.
    @Test("every metadata key becomes a field name journald keeps")
    func fieldNamesJournaldKeeps() async throws {
        let long = String(repeating: "segment.", count: 10)
        let keys = ["cache.hit-ratio", "ünïcode", "9lives", "", "message", "_private", long]
        let (records, _) = try await Self.journal([Call(message: "names", metadata: Dictionary(uniqueKeysWithValues: keys.map { ($0, "v") }))])
        let record = try #require(records.first)
        let names = record.map(\.name)
        for name in names {
            let valid =
                (1...64).contains(name.utf8.count) && !name.hasPrefix("_") && !(name.first?.isNumber ?? true)
                && name.utf8.allSatisfy { (65...90).contains($0) || (48...57).contains($0) || $0 == 95 }
            #expect(valid, "\(name)")
        }
        #expect(names.contains("TOKENBROKER_CACHE_HIT_RATIO") && names.contains("TOKENBROKER_9LIVES") && names.contains("TOKENBROKER_MESSAGE"))
        #expect(names.contains(String("TOKENBROKER_\(long.uppercased().replacingOccurrences(of: ".", with: "_"))".prefix(64))))
        #expect(names.filter { $0.hasPrefix("TOKENBROKER_") }.count == keys.count)
    }
}
