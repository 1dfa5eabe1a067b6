import ExecPlugins
import Foundation
import Logging
import Testing
import TokenExchange

/// The shell-script plugins in `Tests/Fixtures/plugins`, and what the tests need around them.
enum Plugins {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/plugins").path

    static func path(_ name: String) -> String { "\(directory)/\(name)" }

    static func configuration(
        _ name: String, _ arguments: [String] = [], environment: [String: String] = [:],
        timeout: Duration = .seconds(10), maxOutputBytes: Int = 1 << 20
    ) -> ExecPluginConfiguration {
        ExecPluginConfiguration(command: [path(name)] + arguments, environment: environment, timeout: timeout, maxOutputBytes: maxOutputBytes)
    }

    static let logger = Logger(label: "ExecPluginsTests")
    static let audience = "api://AzureADTokenExchange"
    static let scope = Scope("https://storage.azure.com/.default")

    /// An unsigned but well-formed JWT (nobody checks the signature here).
    static func jwt(expiresAt: Date = Date().addingTimeInterval(3600), subject: String = "system:serviceaccount:ci:builder") -> String {
        let iat = Int(Date().timeIntervalSince1970) - 60
        let header = #"{"alg":"RS256","kid":"k1","typ":"JWT"}"#
        let payload =
            #"{"aud":["\#(audience)"],"exp":\#(Int(expiresAt.timeIntervalSince1970)),"iat":\#(iat),"iss":"https://issuer.example","nbf":\#(iat),"sub":"\#(subject)"}"#
        return "\(Base64URL.encode(Data(header.utf8))).\(Base64URL.encode(Data(payload.utf8))).c2lnbmF0dXJlLW5vdC1jaGVja2Vk"
    }

    static func assertion(_ jwt: String = Plugins.jwt()) -> Assertion {
        try! Assertion(jwt: jwt, origin: "test", loadedAt: Date())
    }

    static func fetcher(_ configuration: ExecPluginConfiguration, audience: String? = Plugins.audience, name: String = "ci") -> ExecAssertionFetcher {
        ExecAssertionFetcher(configuration: configuration, audience: audience, name: name, now: { Date() }, logger: logger)
    }

    static func exchanger(_ configuration: ExecPluginConfiguration, name: String = "ci") -> ExecExchanger {
        ExecExchanger(configuration: configuration, name: name, now: { Date() }, logger: logger)
    }

    /// Runs the good assertion plugin and the good exchange plugin: whatever failed before
    /// must not affect them.
    static func expectGoodPluginsStillWork() async throws {
        let jwt = Plugins.jwt()
        let assertion = try await fetcher(configuration("assertion-good.sh", environment: ["PLUGIN_TOKEN": jwt])).fetch()
        #expect(assertion.jwt == jwt)
        let token = try await exchanger(configuration("exchange-good.sh")).exchange(assertion, for: scope)
        #expect(token.value == "access-token-from-plugin")
    }

    /// The `TokenExchangeError` an async call ends with; nil when it succeeds.
    static func error<T>(_ body: () async throws -> T) async -> TokenExchangeError? {
        do {
            _ = try await body()
            return nil
        } catch let error as TokenExchangeError {
            return error
        } catch {
            Issue.record("unexpected error type: \(error)")
            return nil
        }
    }
}

/// A temporary directory removed when the test is done.
final class Scratch {
    let path: String

    init() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("exec-plugins-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    func read(_ name: String) -> String? { try? String(contentsOfFile: file(name), encoding: .utf8) }

    func pid(_ name: String) -> pid_t? { read(name).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) } }
}

enum Processes {
    /// The process was our child and has been reaped: waitpid knows nothing of it and /proc
    /// has no entry (not even a zombie).
    static func expectReaped(_ pid: pid_t?, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let pid else {
            Issue.record("the plugin did not record its pid", sourceLocation: sourceLocation)
            return
        }
        let result = waitpid(pid, nil, WNOHANG)
        let error = errno
        #expect(result == -1 && error == ECHILD, "pid \(pid) is still our unreaped child", sourceLocation: sourceLocation)
        #expect(!FileManager.default.fileExists(atPath: "/proc/\(pid)"), "pid \(pid) still exists", sourceLocation: sourceLocation)
    }

    /// A process we did not start ourselves (a plugin's child) no longer runs: gone, or a
    /// zombie waiting for its new parent. Waits for the kill to land, up to 20 s.
    static func isDead(_ pid: pid_t?) async -> Bool {
        guard let pid else { return false }
        for _ in 0..<1000 {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
            // "pid (comm) S …": the state follows the last ')'.
            if let close = stat.lastIndex(of: ")"), stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first == "Z" {
                return true
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}
