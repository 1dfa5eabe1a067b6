import Glibc
import NIOCore
import NIOHTTP1
import TokenBrokerProtocol

/// Serves the HTTP/1.1 side of the socket: `GET /v1/token`, `/v1/status`,
/// `/healthz`, `/readyz`. Every route maps onto a `BrokerRequest`, so the JSON is
/// the same as on the NDJSON side. On a compatibility listener every request goes
/// to its `HTTPService` instead. Pipelined requests are answered in order.
///
/// It reads request heads from the bytes itself (`HTTPHeadParser`) and writes each
/// answer as one buffer (status line, constant headers, `Content-Length`, body): every
/// route is a small GET with a small, complete answer, and NIO's general parser and
/// encoder (a callback per element, a header table per request) cost more than the
/// rest of a cached-token answer. A malformed request gets a 400 and a close; a head
/// over `maxHeadBytes` a 413 and a close.
final class HTTPRequestHandler: ConnectionGuarded {
    let connection: any ConnectionIO
    private let responder: any BrokerResponder
    private let metrics: (any MetricsExposition)?
    private let service: (any HTTPService)?
    private let peer: PeerCredentials
    private let maxHeadBytes: Int
    /// Told what is read, for the connection's timeouts.
    let connectionGuard: ConnectionGuard
    private var sequencer = ResponseSequencer<HTTPReply>()
    var answersOwed: Int { sequencer.pendingCount }
    /// The bytes of an unfinished request head, kept between reads.
    private var unfinished: ByteBuffer?
    /// A head whose body is still being skipped; answered once the body has passed.
    private var awaitingBody: HTTPHead?
    private var bodyBytesLeft = 0
    private var closeWhenDrained = false
    /// Between `channelRead` and `channelReadComplete`: writes wait for one flush.
    private var inReadBatch = false
    private var wroteSinceFlush = false
    private var readGate = ReadGate()
    private var plainToken = WireCoding.PlainTokenMemo()
    /// The last answer the responder let this connection repeat.
    private var lastAnswer: AnswerMemo?
    /// The bytes of the last head read and what they parsed to (the socket's own routes
    /// only). A head is a function of its bytes alone, so a keep-alive client sending the
    /// same head again (a poller, a benchmark) gets the same result from a `memcmp`
    /// instead of a parse.
    private var lastHeadBytes: [UInt8] = []
    private var lastHead: HTTPHead?

    init(
        connection: any ConnectionIO, responder: any BrokerResponder, peer: PeerCredentials, maxHeadBytes: Int = WireProtocol.maxRequestBytes,
        connectionGuard: ConnectionGuard, metrics: (any MetricsExposition)? = nil, service: (any HTTPService)? = nil
    ) {
        self.connection = connection
        self.responder = responder
        self.peer = peer
        self.maxHeadBytes = maxHeadBytes
        self.connectionGuard = connectionGuard
        connectionGuard.kind = .http  // how it answers a timeout
        self.metrics = metrics
        self.service = service
    }

    func received(_ bytes: ByteBuffer) {
        // After a request asked to close, or a refused one, nothing more is read.
        guard !closeWhenDrained, !connectionGuard.failed else { return }
        inReadBatch = true
        var buffer = bytes
        // Bytes of an unfinished head already parsed: a head can only be completed by a new
        // line end, so one sent a byte at a time is not parsed again for every byte.
        var parsedBefore = 0
        if var kept = unfinished {
            unfinished = nil
            parsedBefore = awaitingBody == nil ? kept.readableBytes : 0
            kept.writeBuffer(&buffer)
            buffer = kept
        }
        var completedRequest = false
        defer { connectionGuard.didRead(completedRequest: completedRequest, partialRemains: unfinished != nil || awaitingBody != nil) }
        if parsedBefore > 0, !buffer.readableBytesView.dropFirst(parsedBefore).contains(UInt8(ascii: "\n")) {
            // A refused request ends the connection's request deadline too (its answer may
            // wait behind a slow one).
            guard buffer.readableBytes <= maxHeadBytes else {
                completedRequest = true
                return refuse(.tooLarge)
            }
            // Still in the method of the first line: garbage is refused at once, as a parse would.
            if parsedBefore <= HTTPHeadParser.maxMethodBytes, !buffer.readableBytesView.prefix(parsedBefore).contains(UInt8(ascii: "\n")) {
                do {
                    try buffer.withUnsafeReadableBytes { bytes throws(HTTPHeadError) in try HTTPHeadParser.checkMethodStart(bytes, from: 0) }
                } catch {
                    completedRequest = true
                    return refuse(error)
                }
            }
            unfinished = buffer  // already a copy of ours
            return
        }
        while buffer.readableBytes > 0, !closeWhenDrained {
            if let head = awaitingBody {
                let skipped = min(bodyBytesLeft, buffer.readableBytes)
                buffer.moveReaderIndex(forwardBy: skipped)
                bodyBytesLeft -= skipped
                guard bodyBytesLeft == 0 else { break }
                awaitingBody = nil
                completedRequest = true
                handle(head)
                continue
            }
            let parsed: (HTTPHead, Int)?
            if let lastHead, buffer.withUnsafeReadableBytes({ Self.starts($0, with: lastHeadBytes) }) {
                parsed = (lastHead, lastHeadBytes.count)
            } else {
                do {
                    parsed = try buffer.withUnsafeReadableBytes { bytes throws(HTTPHeadError) in
                        try HTTPHeadParser.parse(bytes, maxHeadBytes: maxHeadBytes, collectHeaders: service != nil)
                    }
                } catch {
                    completedRequest = true
                    return refuse(error)
                }
                // Not on a compatibility listener: its heads carry a secret (`X-IDENTITY-HEADER`)
                // that should not outlive its request, and SDKs vary them per call anyway.
                if service == nil, let (head, length) = parsed, length <= Self.rememberedHeadBytes {
                    lastHeadBytes.removeAll(keepingCapacity: true)
                    lastHeadBytes.append(contentsOf: buffer.readableBytesView.prefix(length))
                    lastHead = head
                }
            }
            guard let (head, length) = parsed else { break }
            buffer.moveReaderIndex(forwardBy: length)
            guard head.bodyLength <= maxHeadBytes else {
                completedRequest = true
                return refuse(.tooLarge)
            }
            if head.bodyLength > 0 {
                awaitingBody = head
                bodyBytesLeft = head.bodyLength
                continue
            }
            completedRequest = true
            handle(head)
        }
        guard buffer.readableBytes > 0, !closeWhenDrained else { return }
        // Kept for the next read; a copy, so the connection's receive buffer can be reused.
        var kept = connection.allocator.buffer(capacity: buffer.readableBytes)
        kept.writeBuffer(&buffer)
        unfinished = kept
    }

    /// Heads up to this long are remembered for the next (a typical one is under 200 bytes).
    static let rememberedHeadBytes = 1024

    private static func starts(_ bytes: UnsafeRawBufferPointer, with prefix: [UInt8]) -> Bool {
        bytes.count >= prefix.count && prefix.withUnsafeBytes { memcmp(bytes.baseAddress!, $0.baseAddress!, $0.count) == 0 }
    }

    /// Answers a request that cannot be read, then closes: the stream is unusable.
    private func refuse(_ error: HTTPHeadError) {
        unfinished = nil
        closeWhenDrained = true
        let slot = sequencer.reserve()
        let form = HTTPReply.Form(keepAlive: false, headOnly: false)
        switch error {
        case .tooLarge:
            let body = BrokerResponse.failure(id: nil, WireError(code: .tooLarge, message: "HTTP request exceeds \(maxHeadBytes) bytes; closing the connection"))
            complete(slot, HTTPReply(status: .payloadTooLarge, body: body, form: form))
        case .malformed(let what):
            let body = BrokerResponse.failure(id: nil, WireError(code: .badRequest, message: "malformed HTTP request (\(what)); closing the connection"))
            complete(slot, HTTPReply(status: .badRequest, body: body, form: form))
        }
    }

    private func handle(_ head: HTTPHead) {
        let slot = sequencer.reserve()
        // `HEAD`: the headers of the `GET`, without the body.
        let form = HTTPReply.Form(keepAlive: head.keepAlive, headOnly: head.method == "HEAD")
        if !form.keepAlive { closeWhenDrained = true }
        if let service {
            let request = HTTPServiceRequest(head)
            let peer = self.peer
            let answered = connection.onConnectionThread { (response: HTTPServiceResponse) in
                self.complete(slot, HTTPReply(code: response.status, .custom(response), form: form))
                self.connectionGuard.didAnswer()
            }
            Task { answered(await service.respond(to: request, from: peer)) }
            return
        }
        // The same target as the remembered answer's: the same request, not parsed again.
        if let memo = lastAnswer, memo.target == head.target, head.method == "GET" || head.method == "HEAD" {
            switch memo.repeatable.renew(memo.request, for: peer) {
            case .holds:
                return complete(slot, HTTPReply(code: 200, .memo(memo), form: form))
            case .instead(let response):
                return complete(slot, HTTPReply(response, form: form))
            case .expired:
                lastAnswer = nil
            }
        }
        let route = HTTPRoute(head)
        switch route {
        case .reply(let status, let body):
            complete(slot, HTTPReply(status: status, body: body, form: form))
        case .broker(let request):
            if let immediate = responder.immediateResponse(to: request, from: peer) {
                guard let repeatable = immediate.repeatable, immediate.response.error == nil else {
                    return complete(slot, HTTPReply(immediate.response, form: form))
                }
                // HTTP requests have no `id`: the memo's bytes are the whole body.
                let encoded = WireCoding.encode(immediate.response, allocator: connection.allocator, memo: &plainToken)
                let memo = AnswerMemo(request: request, response: immediate.response, encoded: encoded, repeatable: repeatable, target: head.target)
                lastAnswer = memo
                complete(slot, HTTPReply(code: 200, .memo(memo), form: form))
                return
            }
            responder.respond(
                to: request, from: peer,
                completion: connection.onConnectionThread { (response: BrokerResponse) in
                    self.complete(slot, HTTPReply(response, form: form))
                    self.connectionGuard.didAnswer()
                })
        case .metrics:
            guard let metrics else {
                let body = BrokerResponse.failure(id: nil, WireError(code: .notFound, message: "metrics are not enabled"))
                complete(slot, HTTPReply(status: .notFound, body: body, form: form))
                return
            }
            complete(slot, HTTPReply(code: 200, .text(metrics.prometheusText()), form: form))
        case .readiness:
            let (ready, reason) = responder.readiness()
            let body = BrokerResponse(id: nil, ok: ready, error: ready ? nil : WireError(code: .upstreamUnavailable, message: reason, retryable: true))
            complete(slot, HTTPReply(status: ready ? .ok : .serviceUnavailable, body: body, form: form))
        }
    }

    func receiveBatchEnded() {
        inReadBatch = false
        flushIfNeeded()
        readGate.update(connection, pending: sequencer.pendingCount)
    }

    func writabilityChanged() {
        readGate.update(connection, pending: sequencer.pendingCount)
    }

    /// The peer finished sending, or the server is shutting down: answer what is
    /// pending, then close.
    func inputClosed() {
        closeWhenDrained = true
        flushIfNeeded()
        closeIfDrained()
    }

    func drain() {
        inputClosed()
    }

    private func complete(_ slot: UInt64, _ reply: HTTPReply) {
        guard var reply = sequencer.complete(slot, with: reply) else { return }
        repeat {
            write(reply)
            guard let next = sequencer.next() else { break }
            reply = next
        } while true
        // Answers to requests of this read go out with one flush in channelReadComplete.
        if !inReadBatch {
            flushIfNeeded()
            readGate.update(connection, pending: sequencer.pendingCount)
        }
        closeIfDrained()
    }

    private func write(_ reply: HTTPReply) {
        switch reply.content {
        case .memo(let memo):
            // The usual keep-alive answer is built once per memo and then written as it is.
            let keptOpen = reply.form.keepAlive && !closeWhenDrained && !reply.form.headOnly
            if keptOpen, let message = memo.httpMessage {
                connection.write(message)
                wroteSinceFlush = true
                return
            }
            let message = writeMessage(code: reply.code, contentType: "application/json", body: memo.encoded, extraHeaders: [], form: reply.form)
            if keptOpen { memo.httpMessage = message }
        case .json(let response):
            let body = WireCoding.encode(response, allocator: connection.allocator, memo: &plainToken)
            let retryAfter = response.error?.retryAfter.map { [(name: "Retry-After", value: String($0))] } ?? []
            writeMessage(code: reply.code, contentType: "application/json", body: body, extraHeaders: retryAfter, form: reply.form)
        case .text(let text):
            let body = connection.allocator.buffer(string: text)
            writeMessage(code: reply.code, contentType: "text/plain; version=0.0.4; charset=utf-8", body: body, extraHeaders: [], form: reply.form)
        case .custom(let custom):
            let body = connection.allocator.buffer(string: custom.body)
            writeMessage(code: reply.code, contentType: custom.contentType, body: body, extraHeaders: custom.headers, form: reply.form)
        }
    }

    /// Writes one answer; returns it.
    @discardableResult
    private func writeMessage(
        code: Int, contentType: String, body: ByteBuffer, extraHeaders: [(name: String, value: String)], form: HTTPReply.Form
    ) -> ByteBuffer {
        var message = connection.allocator.buffer(capacity: 192 + body.readableBytes)
        if code == 200 {
            message.writeStaticString("HTTP/1.1 200 OK\r\nContent-Type: ")
        } else {
            let status = HTTPResponseStatus(statusCode: code)
            message.writeString("HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\nContent-Type: ")
        }
        message.writeString(contentType)
        message.writeStaticString("\r\nContent-Length: ")
        message.writeString(String(body.readableBytes))
        message.writeStaticString("\r\nCache-Control: no-store\r\n")
        // Header fields come from this process, never from a request; a CR or LF would
        // still split the response, so such a field is dropped rather than sent.
        for field in extraHeaders where !(field.name + field.value).utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) {
            message.writeString("\(field.name): \(field.value)\r\n")
        }
        message.writeStaticString(form.keepAlive && !closeWhenDrained ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n")
        if !form.headOnly { message.writeImmutableBuffer(body) }
        connection.write(message)
        wroteSinceFlush = true
        return message
    }

    private func flushIfNeeded() {
        guard wroteSinceFlush else { return }
        wroteSinceFlush = false
        connection.flush()
    }

    private func closeIfDrained() {
        guard closeWhenDrained, sequencer.pendingCount == 0, connection.isActive else { return }
        flushIfNeeded()  // never close over unflushed answers
        connection.close()
    }
}

/// One finished HTTP answer. Small to copy (it waits in the sequencer): a JSON
/// response is boxed, a remembered answer is a reference.
struct HTTPReply {
    /// How the answer is framed, from its request.
    struct Form {
        var keepAlive: Bool
        /// An answer to `HEAD`: the headers only.
        var headOnly: Bool
    }

    /// What the body is.
    enum Content {
        /// A response, encoded as JSON when written.
        indirect case json(BrokerResponse)
        /// The connection's remembered answer (a successful token): its bytes are in the memo.
        case memo(AnswerMemo)
        /// Plain text (`/metrics`).
        case text(String)
        /// An `HTTPService`'s answer, sent as it is.
        case custom(HTTPServiceResponse)
    }

    /// The status code (the reason phrase is NIO's for it).
    var code: Int
    var content: Content
    var form: Form

    init(code: Int, _ content: Content, form: Form) {
        self.code = code
        self.content = content
        self.form = form
    }

    init(status: HTTPResponseStatus, body: BrokerResponse, form: Form) {
        self.init(code: Int(status.code), .json(body), form: form)
    }

    /// The status follows the response's error code.
    init(_ response: BrokerResponse, form: Form) {
        self.init(code: response.error.map { WireCoding.httpStatus(for: $0.code) } ?? 200, .json(response), form: form)
    }
}

extension HTTPServiceRequest {
    init(_ head: HTTPHead) {
        let target = HTTPRequestTarget(head.target)
        self.init(method: head.method, path: target.path, query: target.query, headers: head.headers, target: head.target)
    }
}

/// Where an HTTP request goes.
enum HTTPRoute {
    case broker(BrokerRequest)
    case readiness
    case metrics
    case reply(HTTPResponseStatus, BrokerResponse)

    init(_ head: HTTPHead) {
        guard head.method == "GET" || head.method == "HEAD" else {
            self = .reply(.methodNotAllowed, .failure(id: nil, WireError(code: .badRequest, message: "method \(head.method) is not supported; use GET")))
            return
        }
        let target = HTTPRequestTarget(head.target)
        switch target.path {
        case "/v1/token":
            var minValidity: Int?
            if let text = target.first("minValiditySeconds") {
                guard let value = Int(text), value >= 0 else {
                    self = .reply(.badRequest, .failure(id: nil, WireError(code: .badRequest, message: "query parameter 'minValiditySeconds' must be a non-negative integer")))
                    return
                }
                minValidity = value
            }
            self = .broker(
                BrokerRequest(
                    op: "token", scope: target.first("scope"), resource: target.first("resource"), identity: target.first("identity"),
                    minValiditySeconds: minValidity, clientId: target.first("clientId"), tenantId: target.first("tenantId"), volume: target.first("volume")))
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
