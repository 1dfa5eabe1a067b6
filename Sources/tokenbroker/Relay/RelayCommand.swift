import CommandLineTable
import Glibc
import PlainJSON

/// `tokenbroker relay`: the pod side of node mode. Serves the App Service, IMDS and AWS
/// container-credentials protocols on the pod's loopback and answers each request through
/// the node broker's socket, so the broker attests this process (its pod) and applies its
/// own rules. docs/kubernetes.md#node-mode.
struct Relay: Subcommand {
    static let spec = CommandSpec(
        name: "relay",
        abstract: "Serve the App Service, IMDS and AWS container-credentials protocols on loopback, answered through the broker's socket.",
        discussion: """
            The anti-SSRF secret (X-IDENTITY-HEADER, and the AWS Authorization token) is read from --identity-header-file, \
            else from IDENTITY_HEADER: give the relay the same value the app gets as IDENTITY_HEADER. \
            Prints "listening on HOST:PORT" once it accepts connections (port 0 picks a free port). \
            GET /healthz answers 200 only while the broker answers; --check asks it and exits 0 or 1 (for exec probes).
            """,
        options: [
            .option("listen", help: "Loopback address to listen on: 127.0.0.0/8 or [::1], with a port (0: any free one).", default: "127.0.0.1:8181"),
            .option("identity-header-file", help: "File holding the identity header secret (default: the IDENTITY_HEADER environment variable)."),
            .option("tenant-id", help: "Entra tenant sent with every token request (node mode; default: the broker's)."),
            .option("volume", help: "Projected volume of this pod holding the assertion (node mode; when the pod has several)."),
            .option("max-connections", help: "Connections served at once; more are answered 503.", default: "64"),
            .option(
                "peers",
                help:
                    "Who may use the relay: same-user (its own uid's processes and root), or any (in a pod's own network namespace, where only the pod reaches loopback).",
                default: RelayPeers.sameUser.rawValue, choices: RelayPeers.allCases.map(\.rawValue)),
            .option(
                "broker-wait", help: "Seconds a token request waits for a broker that refuses connections (restarting) before answering 503.",
                default: "15"),
            .flag("check", help: "Instead of serving, ask the relay at --listen for /healthz and exit 0 if it answers 200."),
        ] + ConnectionOptions.specs)

    let address: LoopbackAddress
    let identityHeaderFile: String?
    let tenantId: String?
    let volume: String?
    let maxConnections: Int
    let peers: RelayPeers
    let brokerWait: Int
    let check: Bool
    let connection: ConnectionOptions

    init(_ arguments: ParsedArguments) throws(UsageError) {
        switch LoopbackAddress.parse(arguments.string("listen") ?? "127.0.0.1:8181") {
        case .success(let address): self.address = address
        case .failure(let error): throw UsageError("--listen: \(error)")
        }
        identityHeaderFile = arguments.string("identity-header-file")
        tenantId = arguments.string("tenant-id")
        volume = arguments.string("volume")
        maxConnections = try arguments.int("max-connections") ?? 64
        peers = arguments.choice("peers") ?? .sameUser
        brokerWait = try arguments.int("broker-wait") ?? 15
        check = arguments.flag("check")
        connection = try ConnectionOptions(arguments)
        guard (1...4096).contains(maxConnections) else { throw UsageError("--max-connections must be 1-4096") }
        guard connection.timeout > 0 else { throw UsageError("--timeout must be positive") }
        guard (0...300).contains(brokerWait) else { throw UsageError("--broker-wait must be 0-300 seconds") }
    }

    func run() throws(ExitCode) {
        if check { return try Self.check(address, timeoutSeconds: connection.timeout) }
        let secret = try identityHeader()
        signal(SIGPIPE, SIG_IGN)
        let bound: (descriptor: Int32, port: UInt16)
        do { bound = try address.listen() } catch { throw Self.fail(error.description, code: 69) }
        let server = RelayServer(
            listener: bound.descriptor,
            responder: RelayResponder(identityHeader: secret, tenantId: tenantId, volume: volume, brokerWait: .seconds(brokerWait)),
            socketPath: connection.socketPath, brokerTimeoutSeconds: connection.timeout,
            limits: RelayServer.Limits(maxConnections: maxConnections), peers: peers)
        print("listening on \(address.display(port: bound.port))")
        fflush(nil)
        server.run()
    }

    /// The secret from the file or IDENTITY_HEADER: one line of 16 to 1024 printable
    /// characters, the rule the daemon applies to its own.
    private func identityHeader() throws(ExitCode) -> String {
        let text: String
        let origin: String
        if let identityHeaderFile {
            guard let contents = readTextFile(identityHeaderFile) else {
                throw Self.fail("cannot read --identity-header-file \(identityHeaderFile): \(String(cString: strerror(errno)))", code: 64)
            }
            (text, origin) = (contents, identityHeaderFile)
        } else if let value = environmentValue("IDENTITY_HEADER") {
            (text, origin) = (value, "IDENTITY_HEADER")
        } else {
            throw Self.fail(
                "the relay needs the identity header secret: --identity-header-file FILE or IDENTITY_HEADER (the value the app gets as IDENTITY_HEADER)",
                code: 64)
        }
        let secret = text.trimmed()
        guard secret.utf8.count >= 16, secret.utf8.count <= 1024, secret.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            throw Self.fail("\(origin) must hold one line of 16 to 1024 printable characters (the X-IDENTITY-HEADER value)", code: 64)
        }
        return secret
    }

    /// `GET /healthz` on the relay: exit 0 on 200, 1 otherwise (with the reason).
    private static func check(_ address: LoopbackAddress, timeoutSeconds: Int) throws(ExitCode) {
        let descriptor: Int32
        do { descriptor = try address.connect(timeoutSeconds: timeoutSeconds) } catch { throw fail(error.description, code: 1) }
        defer { close(descriptor) }
        let request = Array("GET \(RelayResponder.healthPath) HTTP/1.1\r\nHost: \(address.display())\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while received.count < 64 * 1024 {
            let count = recv(descriptor, &chunk, chunk.count, 0)
            guard count > 0 else { break }
            received += chunk[..<count]
        }
        let answer = String(decoding: received, as: UTF8.self)
        guard answer.hasPrefix("HTTP/1.1 200 ") else {
            let body = offset(of: "\r\n\r\n".utf8, in: received).map { String(decoding: received[($0 + 4)...], as: UTF8.self) } ?? ""
            throw fail("the relay is not healthy: \(answer.prefix { $0 != "\r" }) \(body.prefix(512))", code: 1)
        }
        print("ok")
    }

    private static func fail(_ message: String, code: Int32) -> ExitCode {
        writeStandardError("tokenbroker relay: \(message)\n")
        return ExitCode(code)
    }
}
