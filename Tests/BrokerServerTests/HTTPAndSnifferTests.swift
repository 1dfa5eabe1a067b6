import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
import TokenBrokerProtocol

@testable import BrokerServer

/// An active `EmbeddedChannel` with only the sniffer, as the server sets it up.
private func sniffedChannel(_ responder: ScriptedResponder) throws -> EmbeddedChannel {
    let channel = EmbeddedChannel()
    try channel.pipeline.syncOperations.addHandler(
        NIOConnectionHandler {
            ProtocolSniffer(
                connection: $0, responder: responder, peer: testPeer, maxRequestBytes: WireProtocol.maxRequestBytes, connectionGuard: testGuard())
        })
    try channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/tb-test.sock")).wait()
    return channel
}

private func exchange(_ channel: EmbeddedChannel, _ request: String) throws -> [RawHTTPResponse] {
    try channel.writeInbound(ByteBuffer(string: request))
    return RawHTTPResponse.parseAll(try drainOutbound(channel))
}

private func get(_ target: String, _ responder: ScriptedResponder = ScriptedResponder(), extraHeaders: String = "") throws -> RawHTTPResponse? {
    let channel = try sniffedChannel(responder)
    defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
    return try exchange(channel, "GET \(target) HTTP/1.1\r\nHost: localhost\r\n\(extraHeaders)\r\n").first
}

@Suite struct ProtocolSniffing {
    @Test(arguments: [#"{"op":"ping","id":1}"#, #"  {"op":"ping","id":1}"#])
    func jsonGoesToNDJSON(line: String) throws {
        let channel = try sniffedChannel(ScriptedResponder())
        try channel.writeInbound(ByteBuffer(string: line + "\n"))
        #expect(try responses(in: drainOutbound(channel)) == [BrokerResponse(id: .number(1), ok: true)])
        #expect(try channel.pipeline.syncOperations.handler(type: NIOConnectionHandler.self).session is NDJSONHandler)
        _ = try channel.finish()
    }

    @Test func getGoesToHTTP() throws {
        let channel = try sniffedChannel(ScriptedResponder())
        let replies = try exchange(channel, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(replies.map(\.status) == [200])
        #expect(replies.first?.json == BrokerResponse(id: nil, ok: true))
        #expect(try channel.pipeline.syncOperations.handler(type: NIOConnectionHandler.self).session is HTTPRequestHandler)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test func methodSplitAcrossReadsStillRoutesToHTTP() throws {
        let channel = try sniffedChannel(ScriptedResponder())
        #expect(try exchange(channel, "G").isEmpty)
        #expect(try exchange(channel, "ET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").map(\.status) == [200])
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test func aHeadSentAByteAtATimeIsAnsweredOnce() throws {
        let channel = try sniffedChannel(ScriptedResponder())
        var output = ""
        for byte in "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n".utf8 {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
            output += try drainOutbound(channel)
        }
        #expect(RawHTTPResponse.parseAll(output).map(\.status) == [200, 200])
        #expect(channel.isActive)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test func garbageAfterAPartialMethodIsRefusedAtOnce() throws {
        let channel = try sniffedChannel(ScriptedResponder())
        #expect(try exchange(channel, "G").isEmpty)
        let replies = try exchange(channel, "\u{1}\u{2}\u{3}")
        #expect(replies.map(\.status) == [400])
        #expect(!channel.isActive)
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }

    @Test func closingBeforeSendingAnythingJustCloses() throws {
        let channel = try sniffedChannel(ScriptedResponder())
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(!channel.isActive)
        #expect(try drainOutbound(channel).isEmpty)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }
}

@Suite struct HTTPRoutes {
    @Test(arguments: [
        "/v1/token?scope=https%3A%2F%2Fstorage.azure.com%2F.default&identity=writer",
        "/v1/token?scope=https://storage.azure.com/.default&identity=writer",
    ])
    func tokenReturnsTheSameJSONAsNDJSON(target: String) throws {
        let reply = try #require(try get(target))
        #expect(reply.status == 200)
        #expect(reply.headers["content-type"] == "application/json")
        #expect(reply.headers["cache-control"] == "no-store")
        #expect(reply.headers["content-length"] == String(reply.body.utf8.count))
        let expected = ScriptedResponder.answer(BrokerRequest(op: "token", scope: "https://storage.azure.com/.default", identity: "writer"))
        #expect(reply.json == expected)
        #expect(reply.json?.token == ScriptedResponder.token(for: "https://storage.azure.com/.default"))
    }

    @Test func queryParametersBecomeTheRequest() throws {
        let responder = ScriptedResponder()
        _ = try get("/v1/token?resource=https://vault.azure.net&minValiditySeconds=600", responder)
        #expect(responder.requests == [BrokerRequest(op: "token", resource: "https://vault.azure.net", minValiditySeconds: 600)])
    }

    @Test(arguments: ["-1", "abc", "1.5"])
    func badMinValidityIsRejected(value: String) throws {
        let reply = try #require(try get("/v1/token?scope=x&minValiditySeconds=\(value)"))
        #expect(reply.status == 400)
        #expect(reply.json?.error?.code == "bad_request")
    }

    @Test func statusAndHealth() throws {
        #expect(try get("/v1/status")?.json?.status == BrokerStatus(ready: true, identities: []))
        #expect(try get("/healthz")?.status == 200)
    }

    @Test(arguments: ["/", "/v1/tokens", "/metadata/identity/oauth2/token", "/v1/token/extra"])
    func unknownPathIsNotFound(target: String) throws {
        let reply = try #require(try get(target))
        #expect(reply.status == 404)
        #expect(reply.json?.ok == false)
        #expect(reply.json?.error?.code == "not_found")
    }

    @Test(arguments: ["POST", "PUT", "DELETE"])
    func onlyGETIsAllowed(method: String) throws {
        let channel = try sniffedChannel(ScriptedResponder())
        let replies = try exchange(channel, "\(method) /v1/token?scope=x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        #expect(replies.map(\.status) == [405])
        #expect(replies.first?.json?.ok == false)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test func readinessFollowsTheResponder() throws {
        let responder = ScriptedResponder()
        #expect(try get("/readyz", responder)?.status == 200)
        responder.setReadiness(false, "no token obtained yet for identity default")
        let reply = try #require(try get("/readyz", responder))
        #expect(reply.status == 503)
        #expect(reply.json?.ok == false)
        #expect(reply.json?.error?.message == "no token obtained yet for identity default")
    }

    @Test func throttledBecomes429WithRetryAfter() throws {
        let reply = try #require(try get("/v1/token?scope=throttled"))
        #expect(reply.status == 429)
        #expect(reply.headers["retry-after"] == "30")
        #expect(reply.json?.error?.code == "throttled")
    }

    @Test(arguments: [
        ("bad_request", 400), ("unknown_op", 400), ("identity_required", 400), ("forbidden", 403), ("unknown_identity", 404),
        ("not_found", 404), ("too_large", 413), ("throttled", 429), ("upstream_rejected", 502), ("assertion_unavailable", 503),
        ("assertion_expired", 503), ("upstream_unavailable", 503), ("shutting_down", 503), ("internal", 500), ("something_new", 500),
    ])
    func errorCodesMapToHTTPStatus(code: String, status: Int) {
        #expect(HTTPReply.status(for: code) == status)
    }

    @Test func pipelinedRequestsAreAnsweredInOrderOnOneConnection() throws {
        let channel = try sniffedChannel(ScriptedResponder())
        let replies = try exchange(
            channel, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(replies.map(\.status) == [200, 404, 200])
        #expect(replies.allSatisfy { $0.headers["connection"] == "keep-alive" })
        #expect(channel.isActive)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test(arguments: [
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.0\r\n\r\n",
    ])
    func nonKeepAliveClosesAfterTheAnswer(request: String) throws {
        let channel = try sniffedChannel(ScriptedResponder())
        let replies = try exchange(channel, request)
        #expect(replies.map(\.status) == [200])
        #expect(replies.first?.headers["connection"] == "close")
        #expect(!channel.isActive)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }
}

@Suite struct HTTPLimits {
    @Test func headGetsHeadersWithoutABody() throws {
        let channel = try sniffedChannel(ScriptedResponder())
        try channel.writeInbound(ByteBuffer(string: "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
        let text = try drainOutbound(channel)
        let heads = text.components(separatedBy: "\r\n\r\n")
        #expect(heads.count == 3)  // head, head + body of the GET
        #expect(heads.first?.hasPrefix("HTTP/1.1 200 OK") == true)
        #expect(heads.dropFirst().first?.hasPrefix("HTTP/1.1 200 OK") == true)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    /// `maxRequestBytes` is documented as the longest request line *or HTTP head*, and
    /// docs/protocol.md maps `too_large` to 413.
    /// (A pad of 8 KiB is also over the guard's own cap in the first read.)
    @Test(arguments: [4096, 8192])
    func anHTTPHeadOverTheLimitIsTooLarge(pad: Int) throws {
        let channel = EmbeddedChannel()
        // As the server builds it; the guard and the HTTP parser must not both answer.
        try channel.pipeline.syncOperations.addHandler(
            NIOConnectionHandler {
                ProtocolSniffer(connection: $0, responder: ScriptedResponder(), peer: testPeer, maxRequestBytes: 1024, connectionGuard: testGuard())
            })
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/tb-test.sock")).wait()
        _ = try? channel.writeInbound(ByteBuffer(string: "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: \(String(repeating: "p", count: pad))\r\n\r\n"))
        let replies = RawHTTPResponse.parseAll(try drainOutbound(channel))
        #expect(replies.map(\.status) == [413])
        #expect(replies.first?.json?.error?.code == "too_large")
        #expect(!channel.isActive)
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }
}

@Suite struct HTTPGarbage {
    /// The HTTP half of the pipeline on its own, as the sniffer installs it.
    private func httpChannel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            NIOConnectionHandler { HTTPRequestHandler(connection: $0, responder: ScriptedResponder(), peer: testPeer, connectionGuard: testGuard()) })
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/tb-test.sock")).wait()
        return channel
    }

    static let tlsClientHello = "\u{16}\u{03}\u{01}\u{00}\u{a5}\u{01}\u{00}\u{00}\u{a1}\u{03}\u{03}GARBAGE\r\n\r\n"

    @Test(arguments: [
        tlsClientHello,
        "GET / HTTP/9.9\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nBad Header Line\r\n\r\n",
    ])
    func malformedRequestGets400JSONThenClose(request: String) throws {
        let channel = try httpChannel()
        _ = try? channel.writeInbound(ByteBuffer(string: request))
        let replies = RawHTTPResponse.parseAll(try drainOutbound(channel))
        #expect(replies.map(\.status) == [400])
        #expect(replies.first?.json?.error?.code == "bad_request")
        #expect(replies.first?.headers["connection"] == "close")
        #expect(!channel.isActive)
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }

    @Test func badVersionThroughTheSnifferToo() throws {
        let channel = try sniffedChannel(ScriptedResponder())
        _ = try? channel.writeInbound(ByteBuffer(string: "GET / HTTP/9.9\r\n\r\n"))
        let replies = RawHTTPResponse.parseAll(try drainOutbound(channel))
        #expect(replies.map(\.status) == [400])
        #expect(replies.first?.json?.error?.code == "bad_request")
        #expect(!channel.isActive)
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }

    /// A TLS ClientHello does not start with a method, so the sniffer treats it as
    /// NDJSON: it is refused as `bad_request` once its line ends (here: at EOF).
    @Test func tlsThroughTheSnifferIsABadRequestLine() throws {
        let channel = try sniffedChannel(ScriptedResponder())
        try channel.writeInbound(ByteBuffer(string: "\u{16}\u{03}\u{01}\u{00}\u{a5}\u{01}\u{00}"))
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        let answers = try responses(in: drainOutbound(channel))
        #expect(answers.map { $0.error?.code } == ["bad_request"])
        #expect(!channel.isActive)
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }
}

@Suite struct HTTPRepeatedAnswers {
    @Test("a repeated GET gets the same body without reaching the responder; HEAD gets its headers")
    func repeatedGet() throws {
        let responder = ScriptedResponder()
        let channel = try sniffedChannel(responder)
        let target = "/v1/token?scope=\(ScriptedResponder.repeatableScope)"
        let get = "GET \(target) HTTP/1.1\r\nHost: x\r\n\r\n"
        let replies = try exchange(channel, get + get + "HEAD \(target) HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(replies.count == 3)
        let expected = ScriptedResponder.answer(BrokerRequest(op: "token", scope: ScriptedResponder.repeatableScope))
        #expect(replies.prefix(2).map(\.json) == [expected, expected])
        #expect(replies.prefix(2).map(\.status) == [200, 200] && replies[0].body == replies[1].body)
        #expect(replies[2].status == 200 && replies[2].body.isEmpty && replies[2].headers["content-length"] == replies[0].headers["content-length"])
        #expect(responder.requests.count == 1 && responder.repeats.renewals == 2)

        // A repeat that closes says so; a refusal instead is sent as such.
        responder.repeats.verdict = .instead(.failure(id: nil, WireError(code: .throttled, message: "slow down", retryable: true, retryAfter: 1)))
        let refused = try exchange(channel, get)
        #expect(refused.map(\.status) == [429] && refused.first?.headers["retry-after"] == "1")
        responder.repeats.verdict = .holds
        let last = try exchange(channel, get + "GET \(target) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(last.map(\.status) == [200, 200] && last.map(\.body) == [replies[0].body, replies[0].body])
        #expect(last.map { $0.headers["connection"] } == ["keep-alive", "close"])
        #expect(!channel.isActive)
        #expect(responder.requests.count == 1)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }
}

@Suite struct HTTPRepeatedHeads {
    @Test("a head repeated byte for byte is answered like the first; a head one byte apart, or the first part of one, is read anew")
    func repeatedHeadsAreReadByTheirBytes() throws {
        let channel = try sniffedChannel(ScriptedResponder())
        let health = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        let replies = try exchange(channel, health + health + "GET /healthy HTTP/1.1\r\nHost: x\r\n\r\n" + health)
        #expect(replies.map(\.status) == [200, 200, 404, 200])

        // The remembered head's first line and more, but not yet its end: nothing to answer.
        #expect(try exchange(channel, health + "GET /healthz HTTP/1.1\r\nHost: x\r\n").map(\.status) == [200])
        #expect(try exchange(channel, "Connection: close\r\n\r\n").map { $0.headers["connection"] } == ["close"])
        #expect(!channel.isActive)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test("a repeated head that announces a body has the body skipped each time")
    func repeatedHeadWithABody() throws {
        let channel = try sniffedChannel(ScriptedResponder())
        let withBody = "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        let replies = try exchange(channel, withBody + withBody + "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(replies.map(\.status) == [200, 200, 404])
        #expect(channel.isActive)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }
}

@Suite struct HTTPBodies {
    @Test("no route takes a body: it is skipped, also across reads, and the connection stays usable")
    func bodiesAreSkipped() throws {
        let channel = try sniffedChannel(ScriptedResponder())
        #expect(try exchange(channel, "POST /v1/token HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello").isEmpty)
        let replies = try exchange(channel, "world" + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(replies.map(\.status) == [405, 200])
        #expect(channel.isActive)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test("a body over the size limit is refused with 413 and a close")
    func aBodyOverTheLimitIsTooLarge() throws {
        let channel = try sniffedChannel(ScriptedResponder())
        let replies = try exchange(channel, "POST /v1/token HTTP/1.1\r\nHost: x\r\nContent-Length: \(WireProtocol.maxRequestBytes + 1)\r\n\r\n")
        #expect(replies.map(\.status) == [413])
        #expect(replies.first?.json?.error?.code == "too_large")
        #expect(!channel.isActive)
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }
}
