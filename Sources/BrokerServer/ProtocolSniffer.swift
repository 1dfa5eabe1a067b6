import NIOCore
import NIOHTTP1

/// Looks at the first byte of a connection and installs the NDJSON or the HTTP/1.1
/// pipeline: an uppercase ASCII letter starts an HTTP method (`GET …`), anything
/// else is NDJSON (a JSON request starts with `{`).
final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let responder: any BrokerResponder
    private let peer: PeerCredentials
    private let maxRequestBytes: Int

    init(responder: any BrokerResponder, peer: PeerCredentials, maxRequestBytes: Int) {
        self.responder = responder
        self.peer = peer
        self.maxRequestBytes = maxRequestBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.readableBytesView.first else { return }
        let pipeline = context.pipeline.syncOperations
        do {
            if first >= UInt8(ascii: "A") && first <= UInt8(ascii: "Z") {
                try pipeline.configureHTTPServerPipeline(position: .after(self), withPipeliningAssistance: false, withErrorHandling: false)
                try pipeline.addHandler(HTTPRequestHandler(responder: responder, peer: peer))
            } else {
                try pipeline.addHandler(ByteToMessageHandler(NDJSONFrameDecoder(maxBytes: maxRequestBytes)), position: .after(self))
                try pipeline.addHandler(NDJSONHandler(responder: responder, peer: peer))
            }
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        pipeline.removeHandler(context: context, promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // A connection that closes or is drained before sending anything just closes.
        switch event {
        case ChannelEvent.inputClosed, is DrainRequest: context.close(promise: nil)
        default: context.fireUserInboundEventTriggered(event)
        }
    }
}

/// Closes connections that stay silent past the idle timeout.
final class IdleCloser: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
