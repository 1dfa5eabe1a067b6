import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// What the scripted server answers to its n-th request (1-based).
struct ScriptedResponse: Sendable {
    var status: Int = 200
    var headers: [(String, String)] = []
    var body: [UInt8] = Array(#"{"ok":true}"#.utf8)
    /// Omit Content-Length (the encoder then sends chunked), to test the streamed size limit.
    var chunked = false
    /// Never answer, to test the request timeout.
    var hang = false
}

/// A tiny HTTP(S) server on 127.0.0.1 that answers from a script and records what it got.
final class ScriptedHTTPServer: Sendable {
    /// The requests seen, as (head, body) pairs.
    struct Seen: Sendable {
        var head: HTTPRequestHead
        var body: [UInt8]
    }

    let port: Int
    private let channel: any Channel
    private let log: RequestLog

    /// Starts serving; `tls` nil means plain HTTP.
    init(tls: (certificate: String, key: String)?, script: @escaping @Sendable (Int) -> ScriptedResponse) async throws {
        let sslContext = try tls.map { tls in
            let configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(tls.certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: tls.key, format: .pem))
            )
            return try NIOSSLContext(configuration: configuration)
        }
        let log = RequestLog()
        let recorder = Recorder { log.append($0) }
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(ScriptedHandler(script: script, recorder: recorder))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        port = channel.localAddress!.port!
        self.log = log
    }

    /// Requests received so far.
    var requests: [Seen] { log.storage.withLock { $0 } }

    /// Stops listening (connections the client still holds close when the client shuts down).
    func stop() async throws {
        try await channel.close().get()
    }
}

private final class RequestLog: Sendable {
    let storage = Mutex<[ScriptedHTTPServer.Seen]>([])

    /// Appends and returns the request's 1-based number.
    func append(_ request: ScriptedHTTPServer.Seen) -> Int {
        storage.withLock { requests in
            requests.append(request)
            return requests.count
        }
    }
}

private struct Recorder: Sendable {
    /// Records a request and returns its 1-based number on this server.
    let record: @Sendable (ScriptedHTTPServer.Seen) -> Int
}

private final class ScriptedHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let script: @Sendable (Int) -> ScriptedResponse
    private let recorder: Recorder
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(script: @escaping @Sendable (Int) -> ScriptedResponse, recorder: Recorder) {
        self.script = script
        self.recorder = recorder
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
        case .body(let buffer):
            body += buffer.readableBytesView
        case .end:
            guard let head else { return }
            // Numbered per server, not per connection: a retry may come on a new connection.
            let response = script(recorder.record(.init(head: head, body: body)))
            if response.hang { return }
            var headers = HTTPHeaders(response.headers)
            if !response.chunked { headers.replaceOrAdd(name: "Content-Length", value: "\(response.body.count)") }
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .init(statusCode: response.status), headers: headers))),
                promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: response.body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
