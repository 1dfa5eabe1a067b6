import FoundationEssentials
import Glibc
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// A small HTTPS/1.1 server: TLS, request aggregation, one async responder per request.
///
/// It binds before it has a responder so the caller can learn the port (and so the issuer URL)
/// first; requests that arrive before `serve(_:)` get 503. Connections are tracked so `close()`
/// ends keep-alive connections too instead of leaking them on the shared event loop group.
final class DevHTTPSServer: Sendable {
    private let serverChannel: any Channel
    private let state: Mutex<State>
    /// The bound port (useful when 0 was asked for).
    let port: Int

    private struct State {
        var responder: DevHTTPResponder?
        var connections: [ObjectIdentifier: any Channel] = [:]
        var closed = false
    }

    private init(serverChannel: any Channel, port: Int) {
        self.serverChannel = serverChannel
        self.state = Mutex(State())
        self.port = port
    }

    /// Binds `host:port` with `tls` and returns once the socket listens.
    static func bind(host: String, port: Int, tls: TLSConfiguration, logger: Logger) async throws -> DevHTTPSServer {
        let sslContext = try NIOSSLContext(configuration: tls)
        // The box exists before the channel so child initializers can register connections.
        let box = StateBox()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard let server = box.server, server.register(channel) else {
                    return channel.close()
                }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOSSLServerHandler(context: sslContext))
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(DevHTTPHandler(server: server, logger: logger))
                }
            }
            .bind(host: host, port: port)
            .get()
        let server = DevHTTPSServer(
            serverChannel: channel, port: channel.localAddress?.port ?? port)
        box.server = server
        return server
    }

    /// Starts answering requests with `responder`.
    func serve(_ responder: @escaping DevHTTPResponder) {
        state.withLock { $0.responder = responder }
    }

    /// Answers one request (503 while no responder is set).
    func respond(to request: DevHTTPRequest) async -> DevHTTPResponse {
        guard let responder = state.withLock({ $0.responder }) else {
            return .text("starting\n", status: .serviceUnavailable)
        }
        return await responder(request)
    }

    /// Stops listening and closes every open connection. Idempotent.
    func close() async {
        let connections = state.withLock { state -> [any Channel] in
            state.closed = true
            state.responder = nil
            return Array(state.connections.values)
        }
        try? await serverChannel.close()
        for connection in connections {
            try? await connection.close()
        }
    }

    private func register(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let accepted = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.connections[id] = channel
            return true
        }
        if accepted {
            channel.closeFuture.whenComplete { [weak self] _ in
                _ = self?.state.withLock { $0.connections.removeValue(forKey: id) }
            }
        }
        return accepted
    }

    /// Lets the child initializer reach the server that is created after `bind` returns.
    private final class StateBox: Sendable {
        private let storage = Mutex<DevHTTPSServer?>(nil)
        var server: DevHTTPSServer? {
            get { storage.withLock { $0 } }
            set { storage.withLock { $0 = newValue } }
        }
    }
}

/// Aggregates one request, hands it to the server's responder, writes the answer.
private final class DevHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Token requests are a few KiB; anything near this is a client bug or abuse.
    private static let maxBodyBytes = 1 << 20

    private let server: DevHTTPSServer
    private let logger: Logger
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false
    private var active = true

    init(server: DevHTTPSServer, logger: Logger) {
        self.server = server
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body = []
            self.tooLarge = false
            // curl sends `Expect: 100-continue` for larger bodies and would otherwise stall a second.
            if head.headers[canonicalForm: "expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                let interim = HTTPResponseHead(version: head.version, status: .continue)
                context.writeAndFlush(wrapOutboundOut(.head(interim)), promise: nil)
            }
        case .body(var buffer):
            if body.count + buffer.readableBytes > Self.maxBodyBytes {
                tooLarge = true
            } else {
                body += buffer.readBytes(length: buffer.readableBytes) ?? []
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let keepAlive = head.isKeepAlive
            if tooLarge {
                write(.text("request body too large\n", status: .payloadTooLarge), keepAlive: false, context: context)
                return
            }
            let request = DevHTTPRequest(method: head.method, uri: head.uri, headers: head.headers, body: body)
            body = []
            let promise = context.eventLoop.makePromise(of: DevHTTPResponse.self)
            promise.completeWithTask { [server] in await server.respond(to: request) }
            promise.futureResult.assumeIsolated().whenSuccess { response in
                self.write(response, keepAlive: keepAlive, context: context)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        active = false
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        active = false
    }

    private func write(_ response: DevHTTPResponse, keepAlive: Bool, context: ChannelHandlerContext) {
        guard active else { return }
        var headers = response.headers
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.count))
        headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        // Every real server sends `Date`; `tokenbroker doctor` measures clock skew with it.
        headers.replaceOrAdd(name: "Date", value: EntraTime.httpDate(Date()))
        let head = HTTPResponseHead(version: .http1_1, status: response.status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !response.body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: response.body)))), promise: nil)
        }
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
        if !keepAlive {
            done.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}
