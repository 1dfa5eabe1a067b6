import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import TokenBrokerProtocol

@testable import BrokerServer

// Fuzzes whatever a client may send on the socket, through the handlers the server
// gives every connection: the `ProtocolSniffer` with its `ConnectionGuard` (idle and
// request timeouts), which hands the connection to `HTTPRequestHandler` and its own
// request-head parser (or the NDJSON handler, for JSON-looking bytes). The connection
// is an `EmbeddedChannel` with `NIOConnectionHandler` (the handlers do not know which
// transport serves them); the responder answers at once. The input arrives
// in three reads; then, for inputs of even length, the client's EOF, and for odd
// ones a stall: the loop's clock jumps past every deadline.
//
// The handlers measure deadlines with the real clock (`NIODeadline.now()`), which an
// `EmbeddedEventLoop` does not move; so the read timeout here is 0 and the idle
// timeout 1 ns, and neither fires until the clock jumps (timers fire only then).
//
// Invariants: nothing traps; every HTTP answer is a well-formed HTTP/1.1 response
// with a `Content-Length` body (JSON that decodes to a `BrokerResponse`, or the
// metrics text); every NDJSON answer is a JSON line; the client's EOF, a stalled
// request or an idle connection always ends with the connection closed.

/// Small, so that the fuzzer reaches the limits (the server uses 64 KiB).
private let maxRequestBytes = 1024
private let peer = PeerCredentials(pid: 4242, uid: 1000, gid: 1000)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: start, count: count))
    let channel = EmbeddedChannel()
    defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
    try! channel.pipeline.syncOperations.addHandler(
        NIOConnectionHandler { connection in
            ProtocolSniffer(
                connection: connection, responder: Responder(), peer: peer, maxRequestBytes: maxRequestBytes,
                connectionGuard: ConnectionGuard(requestTimeout: .zero, idleTimeout: .nanoseconds(1)), metrics: Metrics())
        })
    try! channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/fuzz.sock")).wait()

    var output = [UInt8]()
    for chunk in thirds(input) where channel.isActive {
        _ = try? channel.writeInbound(ByteBuffer(bytes: chunk))
        drain(channel, into: &output)
    }
    if count % 2 == 0 {
        // The client's EOF (the server allows half-closure).
        if channel.isActive { channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
        drain(channel, into: &output)
        precondition(!channel.isActive, "the connection stays open after the client's EOF")
    } else {
        // A client that stops sending: the read timeout (for a request begun) or the
        // idle timeout closes the connection.
        channel.embeddedEventLoop.advanceTime(to: .now() + .seconds(1))
        drain(channel, into: &output)
        precondition(!channel.isActive, "the connection stays open after the timeouts")
    }

    if let first = input.first, ProtocolSniffer.classify(first) == .http {
        checkHTTP(output, sawHEAD: input.firstRange(of: Array("HEAD ".utf8)) != nil)
    } else {
        checkNDJSON(output)
    }
    return 0
}

/// `output` is a sequence of complete HTTP/1.1 responses.
private func checkHTTP(_ output: [UInt8], sawHEAD: Bool) {
    var rest = output[...]
    let separator = Array("\r\n\r\n".utf8)
    while !rest.isEmpty {
        guard let end = rest.firstRange(of: separator) else { preconditionFailure("an HTTP answer without the end of its head") }
        let head = String(decoding: rest[..<end.lowerBound], as: UTF8.self)
        let lines = head.components(separatedBy: "\r\n")
        precondition(lines[0].hasPrefix("HTTP/1.1 "), "an HTTP answer starting with \(lines[0])")
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            precondition(parts.count == 2, "a malformed header line \(line)")
            headers[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces)
        }
        guard let length = headers["content-length"].flatMap({ Int($0) }) else { preconditionFailure("an HTTP answer without Content-Length") }
        var body = rest[end.upperBound...].prefix(length)
        if body.count < length || (length > 0 && body.starts(with: Array("HTTP/1.1 ".utf8))) {
            // The answer to HEAD: the Content-Length of the GET, without the body.
            precondition(sawHEAD, "an HTTP answer shorter than its Content-Length")
            body = rest[end.upperBound..<end.upperBound]
        } else if headers["content-type"] == "application/json" {
            precondition((try? JSONDecoder().decode(BrokerResponse.self, from: Data(body))) != nil, "an HTTP answer whose body is not a response")
        }
        rest = rest[body.endIndex...]
    }
}

/// `output` is a sequence of JSON lines.
private func checkNDJSON(_ output: [UInt8]) {
    let lines = output.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
    precondition(lines.last?.isEmpty == true, "an NDJSON answer does not end with a newline")
    for line in lines.dropLast() {
        precondition((try? JSONDecoder().decode(BrokerResponse.self, from: Data(line))) != nil, "an NDJSON answer that is not a response")
    }
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

/// Answers every request at once: a token echoing the query's strings, or an error.
struct Responder: BrokerResponder {
    /// Successful token answers may be repeated (the connection's memo is fuzzed too).
    func answer(_ request: BrokerRequest, from peer: PeerCredentials) -> BrokerAnswer {
        let answer = Self.answer(request)
        return request.op == "token" && answer.ok ? .repeatable(answer, RepeatCheck { _, _ in .holds }) : .now(answer)
    }

    static func answer(_ request: BrokerRequest) -> BrokerResponse {
        switch request.op {
        case "ping": return BrokerResponse(id: request.id, ok: true)
        case "status": return BrokerResponse(id: request.id, ok: true, status: BrokerStatus(ready: true, identities: []))
        case "token":
            guard let scope = request.scope ?? request.resource.map({ "\($0)/.default" }) else {
                return .failure(id: request.id, WireError(code: .badRequest, message: "a token request needs 'scope' or 'resource'"))
            }
            if scope.hasPrefix("throttle") {
                return .failure(id: request.id, WireError(code: .throttled, message: "slow down", retryable: true, retryAfter: 30))
            }
            return BrokerResponse(
                id: request.id, ok: true, token: "token-for-\(scope)", tokenType: "Bearer", expiresOn: 1_795_917_723,
                expiresIn: Int64(request.minValiditySeconds ?? 3600), identity: request.identity ?? "default", scope: scope)
        default:
            return .failure(id: request.id, WireError(code: .unknownOp, message: "unknown op '\(request.op)'"))
        }
    }

    func readiness() -> (ready: Bool, reason: String) { (false, "waiting for the first token") }
}

struct Metrics: MetricsExposition {
    func prometheusText() -> String { "# TYPE tokenbroker_requests_total counter\ntokenbroker_requests_total 1\n" }
}
