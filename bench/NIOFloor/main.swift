// tokenbroker-nio-floor: the floor of SwiftNIO on this transport, for the benchmark.
// A Unix-socket server answering every '\n'-terminated line with fixed bytes, built
// the way the broker's NDJSON side is (one inbound handler scanning the read buffer,
// one flush per read batch) but doing nothing else: what the broker would cost if its
// own work per request were free. With --http, every "\r\n\r\n"-terminated request
// head gets the same body as an HTTP/1.1 answer (as the C floor's --http does).
//
//   tokenbroker-nio-floor PATH RESPONSE_FILE [THREADS] [--http]
import Foundation
import NIOCore
import NIOPosix

final class FixedAnswer: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let answer: ByteBuffer
    /// `\n` ends a request; for HTTP, `\n` after a `\r\n\r` (how many of the four bytes are seen).
    private let http: Bool
    private var headEnd = 0
    private var wrote = false

    init(answer: ByteBuffer, http: Bool) {
        self.answer = answer
        self.http = http
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        for byte in buffer.readableBytesView {
            if http {
                // Counts through "\r\n\r\n", which may be split across reads.
                let expected: UInt8 = headEnd % 2 == 0 ? UInt8(ascii: "\r") : UInt8(ascii: "\n")
                headEnd = byte == expected ? headEnd + 1 : (byte == UInt8(ascii: "\r") ? 1 : 0)
                guard headEnd == 4 else { continue }
                headEnd = 0
            } else if byte != UInt8(ascii: "\n") {
                continue
            }
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
    FileHandle.standardError.write(Data("usage: tokenbroker-nio-floor PATH RESPONSE_FILE [THREADS] [--http]\n".utf8))
    exit(2)
}
let http = arguments.contains("--http")
// A constant: the child channels' initializer runs on the loops, off the main actor.
let answer: ByteBuffer = {
    guard http else { return ByteBuffer(bytes: bytes) }
    let body = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .newlines)
    return ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
}()
let group = MultiThreadedEventLoopGroup(numberOfThreads: arguments.count > 3 ? Int(arguments[3]) ?? 1 : 1)
unlink(arguments[1])
let channel = try ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 1024)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(FixedAnswer(answer: answer, http: http)) }
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
