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
    /// Answers each `/v1/…` request (the connection's remembered answer, or the responder's).
    private var dispatcher: RequestDispatcher
    private let metrics: (any MetricsExposition)?
    private let service: (any HTTPService)?
    private let peer: PeerCredentials
    private let maxHeadBytes: Int
    /// Told what is read, for the connection's timeouts.
    let connectionGuard: ConnectionGuard
    private var sequencer = ResponseSequencer<HTTPReply>()
    var answersOwed: Int { sequencer.pendingCount }
    /// The bytes of an unfinished request head, kept between reads; while
    /// `readGate.holdingRequests`, the rest of a read held back before it.
    private var unfinished: ByteBuffer?
    /// A head whose body is still being skipped; answered once the body has passed.
    private var awaitingBody: HTTPHead?
    private var bodyBytesLeft = 0
    /// Serving, finishing (after a request that asked to close, or the peer's end),
    /// refused or closed; in a read batch (answers wait for one flush) or not.
    private var lifecycle = ConnectionLifecycle()
    private var readGate = ReadGate()
    /// The last head read (the socket's own routes only), recognised again by its bytes.
    private var lastHead = RememberedHead()

    init(
        connection: any ConnectionIO, responder: any BrokerResponder, peer: PeerCredentials, maxHeadBytes: Int = WireProtocol.maxRequestBytes,
        connectionGuard: ConnectionGuard, metrics: (any MetricsExposition)? = nil, service: (any HTTPService)? = nil
    ) {
        self.connection = connection
        self.responder = responder
        self.dispatcher = RequestDispatcher(responder: responder, peer: peer, newline: false)
        self.peer = peer
        self.maxHeadBytes = maxHeadBytes
        self.connectionGuard = connectionGuard
        connectionGuard.kind = .http  // how it answers a timeout
        self.metrics = metrics
        self.service = service
    }

    func received(_ bytes: ByteBuffer) {
        // After a request asked to close, or a refused one, nothing more is read.
        guard lifecycle.servesRequests, !connectionGuard.failed else { return }
        var buffer = bytes
        if readGate.holdingRequests, var held = unfinished {
            // More of a read that came after serving stopped (SwiftNIO ends its read loop
            // after reading pauses): held too.
            unfinished = nil
            held.writeBuffer(&buffer)
            unfinished = held
            return
        }
        lifecycle.readBatchBegan()
        // Bytes of an unfinished head already parsed: a head can only be completed by a new
        // line end, so one sent a byte at a time is not parsed again for every byte.
        var parsedBefore = 0
        if var kept = unfinished {
            unfinished = nil
            parsedBefore = awaitingBody == nil ? kept.readableBytes : 0
            kept.writeBuffer(&buffer)
            buffer = kept
        }
        serveBuffered(buffer, parsedBefore: parsedBefore)
    }

    /// Answers the requests in `input` and keeps the rest in `unfinished`: an unfinished
    /// head, or (`mayHold`) the requests after the connection stopped being writable too.
    /// `parsedBefore`: leading bytes of an unfinished head already parsed.
    private func serveBuffered(_ input: ByteBuffer, parsedBefore: Int, mayHold: Bool = true) {
        var buffer = input
        var completedRequest = false
        defer {
            // Held requests are complete: no request deadline runs for them.
            let partial = !readGate.holdingRequests && (unfinished != nil || awaitingBody != nil)
            connectionGuard.didRead(completedRequest: completedRequest, partialRemains: partial)
        }
        if parsedBefore > 0, !buffer.readableBytesView.dropFirst(parsedBefore).contains(UInt8(ascii: "\n")) {
            completedRequest = holdUnfinished(buffer, parsedBefore: parsedBefore)
            return
        }
        completedRequest = serveRequests(in: &buffer, mayHold: mayHold)
        guard buffer.readableBytes > 0, lifecycle.servesRequests else { return }
        // Kept for the next read; a copy, so the connection's receive buffer can be reused.
        var kept = connection.allocator.buffer(capacity: buffer.readableBytes)
        kept.writeBuffer(&buffer)
        unfinished = kept
    }

    /// Keeps an unfinished head that got no new line end, unless it is already too large or
    /// not HTTP; returns whether it was refused (a refused request ends the connection's
    /// request deadline too: its answer may wait behind a slow one).
    private func holdUnfinished(_ buffer: ByteBuffer, parsedBefore: Int) -> Bool {
        guard buffer.readableBytes <= maxHeadBytes else {
            refuse(.tooLarge)
            return true
        }
        // Still in the method of the first line: garbage is refused at once, as a parse would.
        if parsedBefore <= HTTPHeadParser.maxMethodBytes, !buffer.readableBytesView.prefix(parsedBefore).contains(UInt8(ascii: "\n")) {
            do {
                try buffer.withUnsafeReadableBytes { bytes throws(HTTPHeadError) in try HTTPHeadParser.checkMethodStart(bytes, from: 0) }
            } catch {
                refuse(error)
                return true
            }
        }
        unfinished = buffer  // already a copy of ours
        return false
    }

    /// Answers every complete request in `buffer` (skipping bodies), leaving the rest in it
    /// (`mayHold`: from where the connection stopped being writable); returns whether a
    /// request was completed (or refused).
    private func serveRequests(in buffer: inout ByteBuffer, mayHold: Bool) -> Bool {
        var completed = false
        while buffer.readableBytes > 0, lifecycle.servesRequests {
            if completed, mayHold, readGate.holdsRest(connection) { break }
            if let head = awaitingBody {
                let skipped = min(bodyBytesLeft, buffer.readableBytes)
                buffer.moveReaderIndex(forwardBy: skipped)
                bodyBytesLeft -= skipped
                guard bodyBytesLeft == 0 else { break }
                awaitingBody = nil
                completed = true
                handle(head)
                continue
            }
            let parsed: ParsedHead?
            do {
                parsed = try nextHead(in: buffer)
            } catch {
                refuse(error)
                return true
            }
            guard let parsed else { break }
            buffer.moveReaderIndex(forwardBy: parsed.length)
            let head = parsed.head
            guard head.bodyLength <= maxHeadBytes else {
                refuse(.tooLarge)
                return true
            }
            if head.bodyLength > 0 {
                awaitingBody = head
                bodyBytesLeft = head.bodyLength
                continue
            }
            completed = true
            handle(head)
        }
        return completed
    }

    /// The head at the start of `buffer` and its length; nil when it is not complete yet.
    private func nextHead(in buffer: ByteBuffer) throws(HTTPHeadError) -> ParsedHead? {
        if let again = lastHead.match(buffer) { return again }
        let parsed = try buffer.withUnsafeReadableBytes { bytes throws(HTTPHeadError) in
            try HTTPHeadParser.parse(bytes, maxHeadBytes: maxHeadBytes, collectHeaders: service != nil)
        }
        // Not on a compatibility listener: its heads carry a secret (`X-IDENTITY-HEADER`)
        // that should not outlive its request, and SDKs vary them per call anyway.
        if service == nil, let parsed { lastHead.remember(parsed, from: buffer) }
        return parsed
    }

    /// Serves the requests held while the connection was not writable, then reads again
    /// (`ReadGate.resumeWhenWritable` runs it).
    private func serveHeld() {
        guard readGate.release(connection), lifecycle.servesRequests, !connectionGuard.failed, connection.isActive,
            let held = unfinished
        else { return }
        unfinished = nil
        lifecycle.readBatchBegan()
        serveBuffered(held, parsedBefore: 0)
        receiveBatchEnded()
    }

    /// Answers a request that cannot be read, then closes: the stream is unusable.
    private func refuse(_ error: HTTPHeadError) {
        unfinished = nil
        readGate.forgetHeld()
        _ = lifecycle.refuse()  // read only while serving: the refusal is always sent
        let slot = sequencer.reserve()
        let form = HTTPReply.Form(keepAlive: false, headOnly: false)
        switch error {
        case .tooLarge:
            let body = BrokerResponse.failure(
                id: nil, WireError(code: .tooLarge, message: "HTTP request exceeds \(maxHeadBytes) bytes; closing the connection"))
            complete(slot, HTTPReply(status: .payloadTooLarge, body: body, form: form))
        case .tooManyFields(let limit):
            let body = BrokerResponse.failure(
                id: nil, WireError(code: .tooLarge, message: "HTTP request has more than \(limit) header fields; closing the connection"))
            complete(slot, HTTPReply(status: .requestHeaderFieldsTooLarge, body: body, form: form))
        case .malformed(let what):
            let body = BrokerResponse.failure(
                id: nil, WireError(code: .badRequest, message: "malformed HTTP request (\(what)); closing the connection"))
            complete(slot, HTTPReply(status: .badRequest, body: body, form: form))
        }
    }

    private func handle(_ head: HTTPHead) {
        let slot = sequencer.reserve()
        // `HEAD`: the headers of the `GET`, without the body.
        let form = HTTPReply.Form(keepAlive: head.keepAlive, headOnly: head.method == "HEAD")
        if !form.keepAlive { lifecycle.finish() }
        if let service { return serve(head, by: service, slot: slot, form: form) }
        // The same target as the remembered answer's: the same request, not parsed again.
        if let memo = dispatcher.memo, memo.target == head.target, head.method == "GET" || head.method == "HEAD",
            let again = dispatcher.repeating(memo, id: memo.request.id)
        {
            return deliver(again, to: slot, form: form)
        }
        switch HTTPRoute(head) {
        case .reply(let status, let body):
            complete(slot, HTTPReply(status: status, body: body, form: form))
        case .broker(let request):
            deliver(dispatcher.dispatch(request, target: head.target, allocator: connection.allocator), to: slot, form: form)
        case .metrics:
            guard let metrics else {
                let body = BrokerResponse.failure(id: nil, WireError(code: .notFound, message: "metrics are not enabled"))
                complete(slot, HTTPReply(status: .notFound, body: body, form: form))
                return
            }
            complete(slot, HTTPReply(code: 200, .text(metrics.prometheusText()), form: form))
        case .readiness:
            let (ready, reason) = responder.readiness()
            let body = BrokerResponse(
                id: nil, ok: ready, error: ready ? nil : WireError(code: .upstreamUnavailable, message: reason, retryable: true))
            complete(slot, HTTPReply(status: ready ? .ok : .serviceUnavailable, body: body, form: form))
        }
    }

    /// A compatibility listener's request: its `HTTPService` answers, in a task.
    private func serve(_ head: HTTPHead, by service: any HTTPService, slot: UInt64, form: HTTPReply.Form) {
        let request = HTTPServiceRequest(head)
        let peer = self.peer
        let answered = connection.onConnectionThread { (response: HTTPServiceResponse) in
            self.complete(slot, HTTPReply(code: response.status, .custom(response), form: form))
            self.connectionGuard.didAnswer()
        }
        Task { answered(await service.respond(to: request, from: peer)) }
    }

    /// Sends the dispatcher's answer in `slot`, now or when its exchange ends.
    private func deliver(_ outcome: RequestDispatcher.Outcome, to slot: UInt64, form: HTTPReply.Form) {
        switch outcome {
        case .remembered(let memo):
            // The usual repeat, nothing before it pending: written at once, not as an
            // `HTTPReply` through the sequencer (copying one there and back cost ~400
            // instructions of a repeat's ~3,000).
            guard sequencer.writesNow(slot) else { return complete(slot, HTTPReply(code: 200, .memo(memo), form: form)) }
            write(memo, form: form)
            answered()
        case .response(let response):
            complete(slot, HTTPReply(response, form: form))
        case .exchange(let ticket):
            ticket.wait(
                connection.onConnectionThread { (response: BrokerResponse) in
                    self.complete(slot, HTTPReply(response, form: form))
                    self.connectionGuard.didAnswer()
                })
        }
    }

    func receiveBatchEnded() {
        connection.perform(lifecycle.readBatchEnded(pending: sequencer.pendingCount, open: connection.isActive))
        readGate.update(connection, pending: sequencer.pendingCount)
    }

    func writabilityChanged() {
        readGate.resumeWhenWritable(connection) { [self] in serveHeld() }
        readGate.update(connection, pending: sequencer.pendingCount)
    }

    /// The peer finished sending: what it sent is answered (held requests too), then the
    /// connection closes.
    func inputClosed() {
        if readGate.holdingRequests, let held = unfinished, lifecycle.servesRequests {
            readGate.forgetHeld()
            unfinished = nil
            lifecycle.readBatchBegan()
            serveBuffered(held, parsedBefore: 0, mayHold: false)
            connection.perform(lifecycle.readBatchEnded(pending: sequencer.pendingCount, open: connection.isActive))
        }
        finish()
    }

    /// The server is shutting down: the pending answers go out, then the connection closes.
    /// Held requests are dropped, as requests still in the socket are: the client did not
    /// take its answers.
    func drain() {
        if readGate.holdingRequests {
            readGate.forgetHeld()
            unfinished = nil
        }
        finish()
    }

    private func finish() {
        lifecycle.finish()
        connection.perform(lifecycle.settle(pending: sequencer.pendingCount, open: connection.isActive))
    }

    func closed() {
        readGate.forgetHeld()  // the scheduled resumption holds this handler
        connectionGuard.stop()
    }

    private func complete(_ slot: UInt64, _ reply: HTTPReply) {
        guard var reply = sequencer.complete(slot, with: reply) else { return }
        repeat {
            write(reply)
            guard let next = sequencer.next() else { break }
            reply = next
        } while true
        answered()
    }

    /// After answers were written: they go out with one flush at the end of a read batch, or now.
    private func answered() {
        connection.perform(lifecycle.answered(pending: sequencer.pendingCount, open: connection.isActive))
        if !lifecycle.inReadBatch { readGate.update(connection, pending: sequencer.pendingCount) }
    }

    /// Writes the connection's remembered answer: its usual keep-alive message is built once
    /// per memo and then written as it is.
    private func write(_ memo: AnswerMemo, form: HTTPReply.Form) {
        let usual = form.keepAlive && lifecycle.keepsOpen && !form.headOnly
        if usual, let message = memo.httpMessage {
            connection.write(message)
            lifecycle.wrote()
            return
        }
        let message = send(code: 200, WireBytes.jsonContentType, memo.encoded, form: form)
        if usual { memo.httpMessage = message }
    }

    /// Writes a message with `body`, framed as `form` and the connection's lifecycle say; returns it.
    private func send(
        code: Int, _ contentType: String, _ body: ByteBuffer, _ extraHeaders: [(name: String, value: String)] = [], form: HTTPReply.Form
    ) -> ByteBuffer {
        let message = HTTPReply.message(
            code: code, contentType: contentType, body: body, extraHeaders: extraHeaders, keepAlive: form.keepAlive && lifecycle.keepsOpen,
            headOnly: form.headOnly, allocator: connection.allocator)
        connection.write(message)
        lifecycle.wrote()
        return message
    }

    private func write(_ reply: HTTPReply) {
        func send(_ contentType: String, _ body: ByteBuffer, _ extraHeaders: [(name: String, value: String)] = []) -> ByteBuffer {
            self.send(code: reply.code, contentType, body, extraHeaders, form: reply.form)
        }
        switch reply.content {
        case .memo(let memo):
            write(memo, form: reply.form)
        case .json(let response):
            let body = WireCoding.encode(response, allocator: connection.allocator)
            _ = send(WireBytes.jsonContentType, body, response.error?.retryAfter.map { [(name: "Retry-After", value: String($0))] } ?? [])
        case .text(let text):
            _ = send(WireBytes.metricsContentType, connection.allocator.buffer(string: text))
        case .custom(let custom):
            _ = send(custom.contentType, connection.allocator.buffer(string: custom.body), custom.headers)
        }
    }
}
