import Foundation
import OffPool

/// The API server's `/openid/v1/jwks` over real TLS (Fixtures/python/kube_apiserver_jwks.py):
/// it answers only with the bearer token in `bearerFile`, serves whatever is in `jwksFile`
/// (both read again per request), and logs each request. Its certificate, for 127.0.0.1, is
/// signed by a CA of its own (`caFile`), made with the openssl command line (P-256: quick).
final class KubeAPIServerStandIn: @unchecked Sendable {
    let process: ChildProcess
    let port: Int
    let caFile: String
    /// A CA that did not sign the server's certificate.
    let otherCAFile: String
    let bearerFile: String
    let jwksFile: String
    private let logFile: String

    var url: String { "https://127.0.0.1:\(port)" }

    /// Starts it in `directory` with a fresh bearer token and an empty key set.
    init(directory: String) async throws {
        let tls = "\(directory)/apiserver-tls"
        try FileManager.default.createDirectory(atPath: tls, withIntermediateDirectories: true)
        caFile = "\(tls)/ca.pem"
        otherCAFile = "\(tls)/other-ca.pem"
        try await offPool { [tls] in try Self.makeCertificates(in: tls) }
        bearerFile = "\(directory)/apiserver-bearer"
        jwksFile = "\(directory)/apiserver-jwks.json"
        logFile = "\(directory)/apiserver-requests.log"
        let portFile = "\(directory)/apiserver-port"
        try "broker-service-account-token-\(UUID().uuidString)".write(toFile: bearerFile, atomically: true, encoding: .utf8)
        try #"{"keys":[]}"#.write(toFile: jwksFile, atomically: true, encoding: .utf8)
        process = try ChildProcess(
            executable: TestEnvironment.python,
            arguments: [
                "\(TestEnvironment.fixtures)/python/kube_apiserver_jwks.py", "\(tls)/server.pem", "\(tls)/server.key", bearerFile, jwksFile, portFile,
                logFile,
            ],
            logDirectory: directory, name: "kube-apiserver")
        let process = self.process
        do {
            try await waitUntil("the API server stand-in to listen") {
                guard process.isRunning else { throw HarnessError("the API server stand-in exited: \(process.stderr)") }
                return FileManager.default.fileExists(atPath: portFile)
            }
        } catch {
            await process.stop()
            throw error
        }
        port = Int(try String(contentsOfFile: portFile, encoding: .utf8)) ?? 0
    }

    /// The bearer token it accepts.
    var bearer: String { (try? String(contentsOfFile: bearerFile, encoding: .utf8)) ?? "" }

    /// The requests it received, oldest first: `path`, `authorized`.
    func requests() -> [[String: Any]] {
        let text = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func stop() async { await process.stop() }

    /// Runs `body` with a stand-in, stopping it afterwards whatever happens.
    static func with<T>(directory: String, _ body: (KubeAPIServerStandIn) async throws -> T) async throws -> T {
        let standIn = try await KubeAPIServerStandIn(directory: directory)
        do {
            let result = try await body(standIn)
            await standIn.stop()
            return result
        } catch {
            await standIn.stop()
            throw error
        }
    }

    private static func makeCertificates(in directory: String) throws {
        func openssl(_ arguments: [String]) throws {
            let result = try runCommandBlocking("/usr/bin/openssl", arguments)
            guard result.status == 0 else { throw HarnessError("openssl \(arguments.first ?? "") failed: \(result.stderr)") }
        }
        for (name, subject) in [("ca", "Stand-in cluster CA"), ("other-ca", "Some other CA")] {
            try openssl([
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(directory)/\(name).key",
                "-out", "\(directory)/\(name).pem", "-days", "2", "-subj", "/CN=\(subject)",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
        }
        try """
        basicConstraints = critical, CA:FALSE
        keyUsage = critical, digitalSignature
        extendedKeyUsage = serverAuth
        subjectAltName = IP:127.0.0.1
        """.write(toFile: "\(directory)/server.ext", atomically: true, encoding: .utf8)
        try openssl([
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(directory)/server.key",
            "-out", "\(directory)/server.csr", "-subj", "/CN=kubernetes",
        ])
        try openssl([
            "x509", "-req", "-in", "\(directory)/server.csr", "-CA", "\(directory)/ca.pem", "-CAkey", "\(directory)/ca.key",
            "-CAcreateserial", "-out", "\(directory)/server.pem", "-days", "2", "-extfile", "\(directory)/server.ext",
        ])
    }
}
