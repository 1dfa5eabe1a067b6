import NIOCore

/// What the line decoder produces.
enum NDJSONFrame {
    /// One line, without its `\n` (a trailing `\r` is left for the JSON parser to ignore).
    case line(ByteBuffer)
    /// A line longer than the limit; the connection is to be closed after answering.
    case tooLarge(limit: Int)
}

/// Splits a byte stream at `\n`, refusing lines longer than `maxBytes` without
/// buffering them (memory stays bounded whatever the peer sends).
struct NDJSONFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = NDJSONFrame

    let maxBytes: Int
    private var failed = false

    init(maxBytes: Int) {
        self.maxBytes = maxBytes
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if failed {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        let view = buffer.readableBytesView
        if let newline = view.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - view.startIndex
            guard length <= maxBytes else { return fail(context: context, buffer: &buffer) }
            let line = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            context.fireChannelRead(Self.wrapInboundOut(.line(line)))
            return .continue
        }
        if buffer.readableBytes > maxBytes { return fail(context: context, buffer: &buffer) }
        return .needMoreData
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        // A last line without `\n` before EOF still counts: `printf '{…}' | socat …` works.
        if !failed, buffer.readableBytes > 0, let line = buffer.readSlice(length: buffer.readableBytes) {
            context.fireChannelRead(Self.wrapInboundOut(.line(line)))
        }
        return .needMoreData
    }

    private mutating func fail(context: ChannelHandlerContext, buffer: inout ByteBuffer) -> DecodingState {
        failed = true
        buffer.moveReaderIndex(to: buffer.writerIndex)
        context.fireChannelRead(Self.wrapInboundOut(.tooLarge(limit: maxBytes)))
        return .needMoreData
    }
}
