import Foundation
import OffPool
import Testing

/// Dev mode keeps its two RSA signing keys in the state directory, so that a restart reads
/// them back instead of spending 0.1–0.2 s of CPU generating them; a saved key it cannot
/// trust is replaced, with a log line saying why, and the daemon still starts.
@Suite("Dev mode signing keys")
struct DevKeyPersistenceTests {
    /// What one start of `tokenbrokerd --dev` signed with: the `kid` of the projected token
    /// (the dev issuer's key) and of the access token the broker served (the emulator's key).
    private struct Start {
        var issuerKid: String
        var entraKid: String
        var stderr: String
    }

    @Test("the keys are saved 0600 and reused by the next start; a corrupt or non-private key file is replaced with a log line")
    func keysPersistAcrossStarts() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = "\(directory)/state"
        let issuerKey = "\(state)/provider/issuer-key.pem"
        let entraKey = "\(state)/provider/entra-key.pem"

        let first = try await start(state, logDirectory: directory, name: "first")
        #expect(first.issuerKid != first.entraKid)
        #expect(first.stderr.contains("generated a dev signing key (none saved yet)"), "\(first.stderr)")
        for path in [issuerKey, entraKey] {
            var info = stat()
            #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600, "\(path)")
            #expect(try String(contentsOfFile: path, encoding: .utf8).hasPrefix("-----BEGIN RSA PRIVATE KEY-----"))
        }

        let second = try await start(state, logDirectory: directory, name: "second")
        #expect(second.issuerKid == first.issuerKid)
        #expect(second.entraKid == first.entraKid)
        #expect(!second.stderr.contains("dev signing key"), "a saved key was not reused: \(second.stderr)")

        // Not a key at all, and a key others could read: both are replaced, each with a line saying why.
        try Data("not a key\n".utf8).write(to: URL(fileURLWithPath: issuerKey))
        #expect(chmod(issuerKey, 0o600) == 0 && chmod(entraKey, 0o644) == 0)
        let third = try await start(state, logDirectory: directory, name: "third")
        #expect(third.issuerKid != first.issuerKid)
        #expect(third.entraKid != first.entraKid)
        #expect(third.stderr.contains("the saved dev signing key is not an RSA private key in PEM"), "\(third.stderr)")
        #expect(third.stderr.contains("the saved dev signing key is not private to uid"), "\(third.stderr)")
        #expect(third.stderr.contains(issuerKey) && third.stderr.contains(entraKey))
        var info = stat()
        #expect(stat(entraKey, &info) == 0 && info.st_mode & 0o777 == 0o600)

        let fourth = try await start(state, logDirectory: directory, name: "fourth")
        #expect(fourth.issuerKid == third.issuerKid && fourth.entraKid == third.entraKid)
    }

    /// Starts `tokenbrokerd --dev`, takes one token through its socket, and stops it.
    private func start(_ state: String, logDirectory: String, name: String) async throws -> Start {
        let broker = try ChildProcess(
            executable: TestEnvironment.daemonPath, arguments: ["--dev", "--state-dir", state], logDirectory: logDirectory, name: name)
        do {
            try await waitUntil("the dev broker's banner") {
                guard broker.isRunning else { throw HarnessError("tokenbrokerd --dev exited: \(broker.stderr)") }
                return broker.stdout.contains("Stop with Ctrl-C")
            }
            let projected = try String(contentsOfFile: "\(state)/provider/tokens/azure-identity-token", encoding: .utf8)
            let answer = try await offPool {
                let connection = try UnixSocketConnection(path: "\(state)/broker.sock")
                try connection.send("{\"op\":\"token\",\"scope\":\"https://storage.azure.com/.default\"}\n")
                return try connection.readLine() ?? ""
            }
            let json = try #require(try JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any], "\(answer)")
            let accessToken = try #require(json["token"] as? String, "\(answer)")
            let started = Start(issuerKid: try Self.kid(projected), entraKid: try Self.kid(accessToken), stderr: broker.stderr)
            await broker.stop()
            return started
        } catch {
            await broker.stop()
            throw error
        }
    }

    /// The `kid` of a JWT's header.
    private static func kid(_ token: String) throws -> String {
        var header = String(token.split(separator: ".").first ?? "").replacingOccurrences(of: "-", with: "+")
            .replacingOccurrences(of: "_", with: "/")
        header += String(repeating: "=", count: (4 - header.count % 4) % 4)
        let data = try #require(Data(base64Encoded: header))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try #require(object["kid"] as? String)
    }
}
