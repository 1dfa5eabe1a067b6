import Dispatch
import Foundation
import Logging

/// A throwaway CA and a leaf for 127.0.0.1/localhost, made with the `openssl` command line
/// in a temp directory.
///
/// Why openssl and not swift-certificates: this test target declares only UpstreamHTTP,
/// TokenExchange and DevIdentityProvider, so X509 is not one of its dependencies; the CLI
/// keeps the test independent of the dev provider's progress. P-256 keys: milliseconds.
struct TestPKI {
    let directory: String
    var caPath: String { "\(directory)/ca.pem" }
    var leafPath: String { "\(directory)/leaf.pem" }
    var leafKeyPath: String { "\(directory)/leaf.key" }
    /// A second, unrelated CA: trusting it must not make the leaf trusted.
    var otherCAPath: String { "\(directory)/other-ca.pem" }

    /// Generates the PKI on a Dispatch thread: `Process` and its pipes block, and blocking
    /// the cooperative pool (two threads here) would stall every other running test.
    static func make() async throws -> TestPKI {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try TestPKI() })
            }
        }
    }

    private init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("upstream-http-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let extensions = """
            basicConstraints = critical, CA:FALSE
            keyUsage = critical, digitalSignature
            extendedKeyUsage = serverAuth
            subjectAltName = DNS:localhost, IP:127.0.0.1
            """
        try Data(extensions.utf8).write(to: URL(fileURLWithPath: "\(directory)/leaf.ext"))
        for (key, cert, name) in [("ca.key", "ca.pem", "TokenBroker Test CA"), ("other-ca.key", "other-ca.pem", "Other CA")] {
            try run([
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=\(name)",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
        }
        try run([
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost",
        ])
        try run([
            "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext",
        ])
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    private func run(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let output = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw PKIError(message: "openssl \(arguments.first ?? "") failed: \(String(decoding: output, as: UTF8.self))")
        }
    }

    struct PKIError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }
}

/// A logger that discards everything, so test output stays readable.
let quietLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
