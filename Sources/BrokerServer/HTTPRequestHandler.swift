import Foundation
import NIOCore
import NIOHTTP1
import TokenBrokerProtocol

/// Serves the HTTP/1.1 side of the socket: `GET /v1/token`, `/v1/status`,
/// `/healthz`, `/readyz`. Every route maps onto a `BrokerRequest`, so the JSON is
/// the same as on the NDJSON side. On a compatibility listener every request goes
/// to its `HTTPService` instead. Pipelined requests are answered in order.
final class HTTPRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let responder: any BrokerResponder
    private let metrics: (any MetricsExposition)?
    private let service: (any HTTPService)?
    private let peer: PeerCredentials
    private var sequencer = ResponseSequencer<HTTPReply>()
    private var current: HTTPRequestHead?
    private var closeWhenDrained = false
    /// The connection's `ConnectionGuard`, told directly when a request is complete.
    private var connectionGuard: ConnectionGuard?
    /// Between `channelRead` and `channelReadComplete`: writes wait for one flush.
    private var inReadBatch = false
    private var wroteSinceFlush = false
    private var readGate = ReadGate()

    init(responder: any BrokerResponder, peer: PeerCredentials, metrics: (any MetricsExposition)? = nil, service: (any HTTPService)? = nil) {
        self.responder = responder
        self.peer = peer
        self.metrics = metrics
        self.service = service
    }

    func handlerAdded(context: ChannelHandlerContext) {
        connectionGuard = try? context.pipeline.syncOperations.handler(type: ConnectionGuard.self)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inReadBatch = true
        switch unwrapInboundIn(data) {
        case .head(let head):
            current = head
        case .body:
            break  // no route takes a body; ignore it
        case .end:
            connectionGuard?.requestCompleted()
            guard let head = current, !closeWhenDrained else { return }
            current = nil
            handle(head, context: context)
        }
    }

    private func handle(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let slot = sequencer.reserve()
        let keepAlive = head.isKeepAlive
        if !keepAlive { closeWhenDrained = true }
        if let service {
            let request = HTTPServiceRequest(head)
            let peer = self.peer
            context.eventLoop.makeFutureWithTask {
                await service.respond(to: request, from: peer)
            }.assumeIsolated().whenSuccess { response in
                var reply = HTTPReply(status: HTTPResponseStatus(statusCode: response.status), body: BrokerResponse(id: nil, ok: true), keepAlive: keepAlive)
                reply.custom = response
                self.complete(slot, reply, context: context)
            }
            return
        }
        let route = HTTPRoute(head)
        switch route {
        case .reply(let status, let body):
            complete(slot, HTTPReply(status: status, body: body, keepAlive: keepAlive), context: context)
        case .broker(let request):
            if let response = responder.immediateResponse(to: request, from: peer) {
                complete(slot, HTTPReply(response, keepAlive: keepAlive), context: context)
                return
            }
            let responder = self.responder
            let peer = self.peer
            context.eventLoop.makeFutureWithTask {
                await responder.response(to: request, from: peer)
            }.assumeIsolated().whenSuccess { response in
                self.complete(slot, HTTPReply(response, keepAlive: keepAlive), context: context)
            }
        case .metrics:
            guard let metrics else {
                let body = BrokerResponse.failure(id: nil, WireError(code: .notFound, message: "metrics are not enabled"))
                complete(slot, HTTPReply(status: .notFound, body: body, keepAlive: keepAlive), context: context)
                return
            }
            var reply = HTTPReply(status: .ok, body: BrokerResponse(id: nil, ok: true), keepAlive: keepAlive)
            reply.text = metrics.prometheusText()
            complete(slot, reply, context: context)
        case .readiness:
            let (ready, reason) = responder.readiness()
            let body = BrokerResponse(id: nil, ok: ready, error: ready ? nil : WireError(code: .upstreamUnavailable, message: reason, retryable: true))
            complete(slot, HTTPReply(status: ready ? .ok : .serviceUnavailable, body: body, keepAlive: keepAlive), context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadBatch = false
        flushIfNeeded(context: context)
        readGate.update(context: context, pending: sequencer.pendingCount)
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        readGate.update(context: context, pending: sequencer.pendingCount)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // The HTTP parser refused the bytes: say why, then close (the stream is unusable).
        guard error is HTTPParserError else {
            context.close(promise: nil)
            return
        }
        closeWhenDrained = true
        let slot = sequencer.reserve()
        if case .headerOverflow = error as? HTTPParserError {
            let body = BrokerResponse.failure(id: nil, WireError(code: .tooLarge, message: "HTTP request head is too large; closing the connection"))
            complete(slot, HTTPReply(status: .payloadTooLarge, body: body, keepAlive: false), context: context)
            return
        }
        let body = BrokerResponse.failure(id: nil, WireError(code: .badRequest, message: "malformed HTTP request (\(error)); closing the connection"))
        complete(slot, HTTPReply(status: .badRequest, body: body, keepAlive: false), context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case ChannelEvent.inputClosed, is DrainRequest:
            closeWhenDrained = true
            flushIfNeeded(context: context)
            closeIfDrained(context: context)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func complete(_ slot: UInt64, _ reply: HTTPReply, context: ChannelHandlerContext) {
        guard var reply = sequencer.complete(slot, with: reply) else { return }
        repeat {
            write(reply, context: context)
            guard let next = sequencer.next() else { break }
            reply = next
        } while true
        // Answers to requests of this read go out with one flush in channelReadComplete.
        if !inReadBatch {
            flushIfNeeded(context: context)
            readGate.update(context: context, pending: sequencer.pendingCount)
        }
        closeIfDrained(context: context)
    }

    private func write(_ reply: HTTPReply, context: ChannelHandlerContext) {
        if let custom = reply.custom {
            let body = context.channel.allocator.buffer(string: custom.body)
            writeMessage(status: reply.status, contentType: custom.contentType, body: body, extraHeaders: custom.headers, keepAlive: reply.keepAlive, context: context)
            return
        }
        let body = reply.text.map { context.channel.allocator.buffer(string: $0) } ?? WireCoding.encode(reply.body, allocator: context.channel.allocator)
        let contentType = reply.text == nil ? "application/json" : "text/plain; version=0.0.4; charset=utf-8"
        let retryAfter = reply.body.error?.retryAfter.map { [(name: "Retry-After", value: String($0))] } ?? []
        writeMessage(status: reply.status, contentType: contentType, body: body, extraHeaders: retryAfter, keepAlive: reply.keepAlive, context: context)
    }

    private func writeMessage(
        status: HTTPResponseStatus, contentType: String, body: ByteBuffer, extraHeaders: [(name: String, value: String)], keepAlive: Bool,
        context: ChannelHandlerContext
    ) {
        var headers = HTTPHeaders()
        headers.reserveCapacity(4 + extraHeaders.count)
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Cache-Control", value: "no-store")
        for field in extraHeaders { headers.add(name: field.name, value: field.value) }
        headers.add(name: "Connection", value: keepAlive && !closeWhenDrained ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.write(wrapOutboundOut(.end(nil)), promise: nil)
        wroteSinceFlush = true
    }

    private func flushIfNeeded(context: ChannelHandlerContext) {
        guard wroteSinceFlush else { return }
        wroteSinceFlush = false
        context.flush()
    }

    private func closeIfDrained(context: ChannelHandlerContext) {
        guard closeWhenDrained, sequencer.pendingCount == 0, context.channel.isActive else { return }
        flushIfNeeded(context: context)  // never close over unflushed answers
        context.close(promise: nil)
    }
}

/// One finished HTTP answer.
struct HTTPReply {
    var status: HTTPResponseStatus
    var body: BrokerResponse
    var keepAlive: Bool
    /// A plain-text body (`/metrics`) sent instead of the JSON `body`.
    var text: String?
    /// An `HTTPService`'s answer, sent as it is instead of `body`.
    var custom: HTTPServiceResponse?

    init(status: HTTPResponseStatus, body: BrokerResponse, keepAlive: Bool) {
        self.status = status
        self.body = body
        self.keepAlive = keepAlive
    }

    init(_ response: BrokerResponse, keepAlive: Bool) {
        let status = response.error.map { HTTPResponseStatus(statusCode: WireCoding.httpStatus(for: $0.code)) } ?? .ok
        self.init(status: status, body: response, keepAlive: keepAlive)
    }
}

extension HTTPServiceRequest {
    init(_ head: HTTPRequestHead) {
        let components = URLComponents(string: head.uri)
        self.init(
            method: head.method.rawValue,
            path: components?.path ?? head.uri,
            query: (components?.queryItems ?? []).map { ($0.name, $0.value ?? "") },
            headers: head.headers.map { ($0.name, $0.value) })
    }
}

/// Where an HTTP request goes.
enum HTTPRoute {
    case broker(BrokerRequest)
    case readiness
    case metrics
    case reply(HTTPResponseStatus, BrokerResponse)

    init(_ head: HTTPRequestHead) {
        guard head.method == .GET || head.method == .HEAD else {
            self = .reply(.methodNotAllowed, .failure(id: nil, WireError(code: .badRequest, message: "method \(head.method) is not supported; use GET")))
            return
        }
        let components = URLComponents(string: head.uri)
        let query = Dictionary((components?.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { first, _ in first })
        switch components?.path ?? head.uri {
        case "/v1/token":
            var minValidity: Int?
            if let text = query["minValiditySeconds"] {
                guard let value = Int(text), value >= 0 else {
                    self = .reply(.badRequest, .failure(id: nil, WireError(code: .badRequest, message: "query parameter 'minValiditySeconds' must be a non-negative integer")))
                    return
                }
                minValidity = value
            }
            self = .broker(BrokerRequest(op: "token", scope: query["scope"], resource: query["resource"], identity: query["identity"], minValiditySeconds: minValidity))
        case "/v1/status":
            self = .broker(BrokerRequest(op: "status"))
        case "/healthz":
            self = .broker(BrokerRequest(op: "ping"))
        case "/readyz":
            self = .readiness
        case "/metrics":
            self = .metrics
        default:
            self = .reply(.notFound, .failure(id: nil, WireError(code: .notFound, message: "no such path; try /v1/token?scope=…, /v1/status, /healthz, /readyz or /metrics")))
        }
    }
}
