import Foundation
import Testing

@testable import BrokerApp

/// What the loader refuses before the daemon would trip over it: files that are not
/// regular files, oversized ones, and settings that start-up fails on.
@Suite("Configuration files and what start-up needs")
struct ConfigurationFileReadingTests {
    /// A fresh directory in /tmp, removed by `remove()`.
    struct Scratch {
        let path: String
        init() throws {
            var template = Array("/tmp/tbcfg-XXXXXX".utf8CString)
            guard let made = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
            path = String(cString: made)
        }
        func remove() { try? FileManager.default.removeItem(atPath: path) }
    }

    static func problems(_ body: () throws -> Void) -> [String] {
        do {
            try body()
            return []
        } catch let error as ConfigurationError {
            return error.issues.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }

    @Test("a directory, a FIFO, a socket or /dev/zero at the path is refused at once, naming what it is")
    func notARegularFile() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let fifo = "\(scratch.path)/fifo.yaml"
        #expect(mkfifo(fifo, 0o600) == 0)
        for (path, kind) in [(scratch.path, "is a directory"), (fifo, "is a FIFO"), ("/dev/zero", "is a character device")] {
            let started = ContinuousClock.now
            let found = Self.problems { _ = try ConfigurationLoader.load(path: path, environment: [:]) }
            #expect(found.count == 1 && found[0].contains(path) && found[0].contains(kind), "\(found)")
            #expect(ContinuousClock.now - started < .seconds(2), "refused without blocking")
        }
    }

    @Test("a file over 1 MiB is refused, not cut off")
    func oversized() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = "\(scratch.path)/big.yaml"
        try String(repeating: "# padding\n", count: 110_000).write(toFile: path, atomically: true, encoding: .utf8)
        let found = Self.problems { _ = try ConfigurationLoader.load(path: path, environment: [:]) }
        #expect(found.count == 1 && found[0].contains("1048576"), "\(found)")
    }

    @Test("a symlink to a regular file is read (ConfigMap volumes are symlinks)")
    func symlinkToFile() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        try "log: { level: debug }\n".write(toFile: "\(scratch.path)/real.yaml", atomically: true, encoding: .utf8)
        #expect(symlink("\(scratch.path)/real.yaml", "\(scratch.path)/config.yaml") == 0)
        #expect(try ConfigurationLoader.load(path: "\(scratch.path)/config.yaml", environment: [:]).log.level == "debug")
    }

    @Test("a file that starts with a UTF-8 byte order mark (Windows editors write one) is read as without it, line numbers and all")
    func byteOrderMark() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        try "\u{FEFF}log: { level: debug }\n".write(toFile: "\(scratch.path)/config.yaml", atomically: true, encoding: .utf8)
        #expect(try ConfigurationLoader.load(path: "\(scratch.path)/config.yaml", environment: [:]).log.level == "debug")
        try "\u{FEFF}log: { level: debug }\nlimits: { nope: 1 }\n".write(toFile: "\(scratch.path)/config.yaml", atomically: true, encoding: .utf8)
        let found = Self.problems { _ = try ConfigurationLoader.load(path: "\(scratch.path)/config.yaml", environment: [:]) }
        #expect(found.contains { $0.contains("limits.nope") && $0.contains("line 2") }, "\(found)")
    }

    @Test(
        "settings start-up fails on are configuration errors",
        arguments: [
            (
                "identities:\n  - name: x\n    source: { file: /t }\n    exchange: { entra: { tenantId: t, clientId: c, authorityHost: \"https://user:secret@login.microsoftonline.com\" } }\n",
                "identities[0].exchange.entra.authorityHost"
            ),
            ("socket: { path: /tmp/\(String(repeating: "s", count: 110)).sock }\n", "socket.path"),
            ("compat: { unix: /tmp/\(String(repeating: "c", count: 110)).sock }\n", "compat.unix"),
            ("upstream: { caFile: /no/such/ca.pem }\n", "upstream.caFile"),
        ])
    func startUpFailures(yaml: String, field: String) {
        let found = Self.problems { _ = try ConfigurationLoader.load(yaml: yaml, origin: "test.yaml", environment: [:]) }
        #expect(found.contains { $0.hasPrefix(field) }, "\(found)")
        #expect(!found.joined().contains("secret"), "user info is not repeated: \(found)")
    }

    @Test("a caFile that is not a PEM bundle, or is a directory, is refused; SSL_CERT_FILE too")
    func garbageCAFile() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let garbage = "\(scratch.path)/ca.pem"
        try "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        for yaml in ["upstream: { caFile: \(garbage) }\n", "upstream: { caFile: \(scratch.path) }\n"] {
            let found = Self.problems { _ = try ConfigurationLoader.load(yaml: yaml, origin: "test.yaml", environment: [:]) }
            #expect(found.count == 1 && found[0].hasPrefix("upstream.caFile"), "\(found)")
        }
        let fromEnvironment = Self.problems {
            _ = try ConfigurationLoader.load(yaml: "", origin: "test.yaml", environment: ["SSL_CERT_FILE": garbage])
        }
        #expect(fromEnvironment.count == 1 && fromEnvironment[0].contains("SSL_CERT_FILE"), "\(fromEnvironment)")
        let system = "/etc/ssl/certs/ca-certificates.crt"
        if FileManager.default.fileExists(atPath: system) {
            #expect(
                Self.problems { _ = try ConfigurationLoader.load(yaml: "upstream: { caFile: \(system) }\n", origin: "test.yaml", environment: [:]) }
                    == [])
        }
    }
}
