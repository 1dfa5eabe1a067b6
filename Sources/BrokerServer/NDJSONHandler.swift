import NIOCore
import TokenBrokerProtocol

/// Serves NDJSON requests on one connection: one JSON object per line in, one per
/// line out, in request order, many per connection. A bad line gets an error and
/// the connection stays usable; an oversized line gets `too_large` and a close.
final class NDJSONHandler: ChannelInboundHandler {
    typealias InboundIn = NDJSONFrame
    typealias OutboundOut = ByteBuffer

    private let responder: any BrokerResponder
    private let peer: PeerCredentials
    private var sequencer = ResponseSequencer<ByteBuffer>()
    private var closeWhenDrained = false
    /// Set by a drain (shutdown): later requests get `shutting_down`.
    private var draining = false
    private var readGate = ReadGate()
    private var wroteSinceFlush = false

    init(responder: any BrokerResponder, peer: PeerCredentials) {
        self.responder = responder
        self.peer = peer
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The decoder hands over an unfinished last line when the connection closes
        // (a read timeout, idleness, a reset). The client never completed it, and no
        // answer could reach it: it is not a request. (At the client's EOF the
        // connection is still active, and a last line without `\n` is answered.)
        guard context.channel.isActive else { return }
        let frame = unwrapInboundIn(data)
        if draining, case .line(let line) = frame, line.readableBytesView.contains(where: { !Self.isWhitespace($0) }) {
            // Shutting down: a request sent on this connection now is answered, not dropped,
            // so the client knows to retry (the next process is already taking connections).
            let slot = sequencer.reserve()
            let id: RequestID? = switch WireCoding.decodeRequest(line) {
            case .success(let request): request.id
            case .failure(let failure): failure.id
            }
            let error = WireError(code: .shuttingDown, message: "the broker is restarting or stopping; retry on a new connection", retryable: true)
            complete(slot, .failure(id: id, error), context: context)
            return
        }
        guard !closeWhenDrained else { return }
        switch frame {
        case .tooLarge(let limit):
            let slot = sequencer.reserve()
            let error = WireError(code: .tooLarge, message: "request line exceeds \(limit) bytes; closing the connection")
            closeWhenDrained = true
            complete(slot, .failure(id: nil, error), context: context)
        case .line(let line):
            guard line.readableBytesView.contains(where: { !Self.isWhitespace($0) }) else { return }  // blank lines are ignored
            let slot = sequencer.reserve()
            switch WireCoding.decodeRequest(line) {
            case .failure(let failure):
                complete(slot, .failure(id: failure.id, failure.error), context: context)
            case .success(let request):
                if let response = responder.immediateResponse(to: request, from: peer) {
                    complete(slot, response, context: context)
                    return
                }
                let responder = self.responder
                let peer = self.peer
                context.eventLoop.makeFutureWithTask {
                    await responder.response(to: request, from: peer)
                }.assumeIsolated().whenSuccess { response in
                    self.complete(slot, response, context: context)
                    self.flushIfNeeded(context: context)
                    self.readGate.update(context: context, pending: self.sequencer.pendingCount)
                }
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context: context)
        readGate.update(context: context, pending: sequencer.pendingCount)
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        readGate.update(context: context, pending: sequencer.pendingCount)
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case ChannelEvent.inputClosed, is DrainRequest:
            if event is DrainRequest { draining = true }
            // The peer finished sending (or we are shutting down): answer what is
            // pending, then close.
            closeWhenDrained = true
            closeIfDrained(context: context)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func complete(_ slot: UInt64, _ response: BrokerResponse, context: ChannelHandlerContext) {
        let line = WireCoding.encode(response, allocator: context.channel.allocator, newline: true)
        guard var buffer = sequencer.complete(slot, with: line) else { return }
        repeat {
            context.write(wrapOutboundOut(buffer), promise: nil)
            wroteSinceFlush = true
            guard let next = sequencer.next() else { break }
            buffer = next
        } while true
    }

    private func flushIfNeeded(context: ChannelHandlerContext) {
        if wroteSinceFlush {
            wroteSinceFlush = false
            context.flush()
        }
        closeIfDrained(context: context)
    }

    private func closeIfDrained(context: ChannelHandlerContext) {
        guard closeWhenDrained, sequencer.pendingCount == 0, context.channel.isActive else { return }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }
}

/// Sent through every connection's pipeline when the server drains for shutdown.
struct DrainRequest: Sendable {}
