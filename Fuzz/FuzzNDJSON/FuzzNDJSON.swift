import Foundation
import NIOCore
import NIOEmbedded
import TokenBrokerProtocol

@testable import BrokerServer

// Fuzzes the NDJSON side of the socket: bytes → lines (`NDJSONHandler`'s framing) →
// `BrokerRequest`s (`WireCoding.decodeRequest`) → answers (`NDJSONHandler`), in an
// `EmbeddedChannel` with the real handlers and a responder that answers at once,
// echoing the request's strings back (so odd strings go through the JSON writer).
// The input arrives in three reads, splitting lines as the kernel may.
//
// Invariants, from docs/protocol.md: nothing traps; the request scanner (the fast
// path) decodes a line only as JSONDecoder does; every request line (not blank)
// gets exactly one answer, in order, and a bad line does not end the connection;
// every answer is one line of JSON that decodes to the expected `BrokerResponse`
// (its `id` the request's, when the request had a readable one); a line over the
// limit gets `too_large` and is the last thing answered; after the client's EOF the
// connection closes.

/// Small, so that the fuzzer reaches the limit (the server uses 64 KiB).
private let maxLineBytes = 512
private let peer = PeerCredentials(pid: 4242, uid: 1000, gid: 1000)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNDJSON(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: start, count: count))
    let channel = EmbeddedChannel()
    defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
    try! channel.pipeline.syncOperations.addHandler(
        NIOConnectionHandler { connection in
            NDJSONHandler(
                connection: connection, responder: EchoResponder(), peer: peer, maxLineBytes: maxLineBytes,
                connectionGuard: ConnectionGuard(requestTimeout: .seconds(10), idleTimeout: .seconds(60)))
        })
    try! channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/fuzz.sock")).wait()

    var output = [UInt8]()
    for chunk in thirds(input) where channel.isActive {
        _ = try? channel.writeInbound(ByteBuffer(bytes: chunk))
        drain(channel, into: &output)
    }
    // The client's EOF (the server allows half-closure).
    if channel.isActive { channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
    drain(channel, into: &output)
    precondition(!channel.isActive, "the connection stays open after the client's EOF")

    let answers = output.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
    precondition(answers.last?.isEmpty == true, "an answer does not end with a newline")
    let expected = expectedResponses(input)
    precondition(answers.count - 1 == expected.count, "\(expected.count) answers expected, \(answers.count - 1) written")
    for (line, response) in zip(answers, expected) {
        let decoded = try? JSONDecoder().decode(BrokerResponse.self, from: Data(line))
        precondition(decoded == response, "answer \(String(decoding: line, as: UTF8.self)) is not \(response)")
    }
    return 0
}

/// What the handlers must answer, worked out line by line from the protocol's rules.
private func expectedResponses(_ input: [UInt8]) -> [BrokerResponse] {
    var responses: [BrokerResponse] = []
    // Every `\n` ends a line; what follows the last one is a line too (EOF ends it).
    for line in input.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
        guard line.count <= maxLineBytes else {
            responses.append(
                .failure(id: nil, WireError(code: .tooLarge, message: "request line exceeds \(maxLineBytes) bytes; closing the connection")))
            break
        }
        guard line.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") && $0 != UInt8(ascii: "\r") }) else { continue }
        // The scanner (the fast path) answers only where JSONDecoder answers the same.
        if let scanned = ByteBuffer(bytes: line).withUnsafeReadableBytes(RequestScanner.scan) {
            let reference = try? WireCoding.decodeWithFoundation(ByteBuffer(bytes: line)).get()
            precondition(scanned == reference, "the scanner read \(scanned), JSONDecoder \(String(describing: reference))")
        }
        switch WireCoding.decodeRequest(ByteBuffer(bytes: line)) {
        case .success(let request): responses.append(EchoResponder.answer(request))
        case .failure(let failure): responses.append(.failure(id: failure.id, failure.error))
        }
    }
    return responses
}

private func thirds(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
    let a = bytes.count / 3
    let b = 2 * bytes.count / 3
    return [bytes[..<a], bytes[a..<b], bytes[b...]].filter { !$0.isEmpty }
}

private func drain(_ channel: EmbeddedChannel, into output: inout [UInt8]) {
    channel.embeddedEventLoop.run()
    while let buffer = try? channel.readOutbound(as: ByteBuffer.self) {
        output += buffer.readableBytesView
    }
}

/// Answers every request at once, echoing its strings into the answer.
struct EchoResponder: BrokerResponder {
    static func answer(_ request: BrokerRequest) -> BrokerResponse {
        switch request.op {
        case "ping":
            return BrokerResponse(id: request.id, ok: true)
        case "status":
            let identity = IdentityStatus(
                name: request.identity ?? "default", exchange: "entra", source: "file:/x", cachedScopes: [request.scope ?? ""])
            return BrokerResponse(id: request.id, ok: true, status: BrokerStatus(ready: true, identities: [identity]))
        case "token":
            let scope = request.scope ?? request.resource.map { "\($0)/.default" } ?? ""
            if scope.hasPrefix("fail") {
                let upstream = UpstreamErrorDetails(status: 400, codes: [70021], error: scope, traceId: request.identity, correlationId: nil)
                return .failure(id: request.id, WireError(code: .upstreamRejected, message: "rejected \(scope)", upstream: upstream))
            }
            return BrokerResponse(
                id: request.id, ok: true, token: "token-for-\(scope)", tokenType: "Bearer", expiresOn: 1_795_917_723,
                expiresIn: Int64(request.minValiditySeconds ?? 3600), identity: request.identity ?? "default", scope: scope)
        default:
            return .failure(id: request.id, WireError(code: .unknownOp, message: "unknown op '\(request.op)'"))
        }
    }

    /// Successful token answers may be repeated, so the connection's repeats (the id
    /// spliced into the remembered answer) are checked against `answer` too.
    func answer(_ request: BrokerRequest, from peer: PeerCredentials) -> BrokerAnswer {
        let answer = Self.answer(request)
        return request.op == "token" && answer.ok ? .repeatable(answer, RepeatCheck { _, _ in .holds }) : .now(answer)
    }

    func readiness() -> (ready: Bool, reason: String) { (true, "ready") }
}
