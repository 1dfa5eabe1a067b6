// tokenbroker-nio-floor: the floor of SwiftNIO on this transport, for the benchmark.
// A Unix-socket server answering every '\n'-terminated line with fixed bytes, built
// the way the broker's NDJSON side is (one inbound handler scanning the read buffer,
// one flush per read batch) but doing nothing else: what the broker would cost if its
// own work per request were free.
//
//   tokenbroker-nio-floor PATH RESPONSE_FILE [THREADS]
import Foundation
import NIOCore
import NIOPosix

final class FixedAnswer: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let answer: ByteBuffer
    private var wrote = false

    init(answer: ByteBuffer) {
        self.answer = answer
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        for byte in buffer.readableBytesView where byte == UInt8(ascii: "\n") {
            context.write(wrapOutboundOut(answer), promise: nil)
            wrote = true
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if wrote {
            wrote = false
            context.flush()
        }
    }
}

let arguments = CommandLine.arguments
guard arguments.count >= 3, let bytes = FileManager.default.contents(atPath: arguments[2]) else {
    FileHandle.standardError.write(Data("usage: tokenbroker-nio-floor PATH RESPONSE_FILE [THREADS]\n".utf8))
    exit(2)
}
let answer = ByteBuffer(bytes: bytes)
let group = MultiThreadedEventLoopGroup(numberOfThreads: arguments.count > 3 ? Int(arguments[3]) ?? 1 : 1)
unlink(arguments[1])
let channel = try ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 1024)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(FixedAnswer(answer: answer)) }
    }
    .bind(unixDomainSocketPath: arguments[1]).wait()
signal(SIGTERM, SIG_IGN)
let stop = DispatchSource.makeSignalSource(signal: SIGTERM)
stop.setEventHandler {
    try? channel.close().wait()
    exit(0)
}
stop.resume()
try channel.closeFuture.wait()
