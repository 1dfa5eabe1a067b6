import Foundation
import NIOCore
import NIOEmbedded
import Testing
import TokenBrokerProtocol

@testable import BrokerServer

/// An active `EmbeddedChannel` with the NDJSON handler.
private func ndjsonChannel(_ responder: ScriptedResponder, maxBytes: Int = WireProtocol.maxRequestBytes) throws -> EmbeddedChannel {
    let channel = EmbeddedChannel()
    try channel.pipeline.syncOperations.addHandler(
        NIOConnectionHandler {
            NDJSONHandler(connection: $0, responder: responder, peer: testPeer, maxLineBytes: maxBytes, connectionGuard: testGuard())
        })
    try channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/tb-test.sock")).wait()
    return channel
}

private func send(_ channel: EmbeddedChannel, _ text: String) throws -> [BrokerResponse] {
    try channel.writeInbound(ByteBuffer(string: text))
    return try responses(in: drainOutbound(channel))
}

@Suite struct NDJSONFraming {
    @Test func aLineSplitOverSeveralReadsIsAnsweredOnce() throws {
        let channel = try ndjsonChannel(ScriptedResponder())
        #expect(try send(channel, #"{"op":"pi"#).isEmpty)
        #expect(try send(channel, #"ng","id":1}"#).isEmpty)
        let answers = try send(channel, "\n")
        #expect(answers == [BrokerResponse(id: .number(1), ok: true)])
        #expect(try channel.finish().isClean)
    }

    @Test func aLineSentAByteAtATimeIsAnsweredOnceThenTheNextLine() throws {
        let channel = try ndjsonChannel(ScriptedResponder())
        for byte in #"{"op":"ping","id":1}"#.utf8 {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
        }
        #expect(try responses(in: drainOutbound(channel)).isEmpty)
        let answers = try send(channel, "\n" + #"{"op":"ping","id":2}"# + "\n" + #"{"op":"pi"#)
        #expect(answers.map(\.id) == [.number(1), .number(2)])
        #expect(try send(channel, #"ng","id":3}"# + "\n").map(\.id) == [.number(3)])
        _ = try channel.finish()
    }

    @Test func twoRequestsInOneReadAreAnsweredInOrder() throws {
        let channel = try ndjsonChannel(ScriptedResponder())
        let answers = try send(
            channel, #"{"op":"ping","id":1}"# + "\n" + #"{"op":"token","scope":"https://storage.azure.com/.default","id":"two"}"# + "\n")
        #expect(answers.map(\.id) == [.number(1), .string("two")])
        #expect(answers[1].token == ScriptedResponder.token(for: "https://storage.azure.com/.default"))
        #expect(answers[1].scope == "https://storage.azure.com/.default")
        #expect(channel.isActive)
        _ = try channel.finish()
    }

    @Test func responsesAreOneLineEachWithoutEscapedSlashes() throws {
        let channel = try ndjsonChannel(ScriptedResponder())
        try channel.writeInbound(ByteBuffer(string: #"{"op":"token","scope":"https://vault.azure.net/.default","id":1}"# + "\n"))
        let text = try drainOutbound(channel)
        #expect(text.hasSuffix("\n") && text.filter { $0 == "\n" }.count == 1)
        #expect(text.contains(#""scope":"https://vault.azure.net/.default""#))
        _ = try channel.finish()
    }

    @Test func blankLinesAreIgnored() throws {
        let channel = try ndjsonChannel(ScriptedResponder())
        let answers = try send(channel, "\n   \n\r\n\t \r\n" + #"{"op":"ping","id":1}"# + "\r\n\n")
        #expect(answers.map(\.id) == [.number(1)])
        _ = try channel.finish()
    }

    @Test func lastLineWithoutNewlineIsAnsweredAtEOF() throws {
        let channel = try ndjsonChannel(ScriptedResponder())
        #expect(try send(channel, #"{"op":"ping","id":9}"#).isEmpty)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(try responses(in: drainOutbound(channel)).map(\.id) == [.number(9)])
        #expect(!channel.isActive)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    /// Found by fuzzing (Fuzz/FuzzHTTP): a partial line was decoded and sent to the
    /// responder when the server closed the connection (read timeout, idleness), and its
    /// answer written to a closed channel.
    @Test func unfinishedLineIsNotARequestWhenTheConnectionCloses() throws {
        let responder = ScriptedResponder()
        let channel = try ndjsonChannel(responder)
        #expect(try send(channel, #"{"op":"token","scope":"https://storage.azure.com/.default","id":9}"#).isEmpty)
        try channel.close().wait()
        #expect(responder.requests.isEmpty)
        #expect(try channel.finish(acceptAlreadyClosed: true).isClean)
    }

    @Test(arguments: [64, 65])
    func lineLengthLimitIsInclusive(length: Int) throws {
        let prefix = #"{"op":"ping","id":1,"pad":""#
        let line = prefix + String(repeating: "x", count: length - prefix.utf8.count - 2) + #""}"#
        #expect(line.utf8.count == length)
        let channel = try ndjsonChannel(ScriptedResponder(), maxBytes: 64)
        let answers = try send(channel, line + "\n")
        #expect(answers.map(\.ok) == [length <= 64])
        #expect(channel.isActive == (length <= 64))
        _ = try channel.finish(acceptAlreadyClosed: true)
    }
}

@Suite struct NDJSONErrors {
    @Test(arguments: [
        ("this is not json", "the request line is not valid JSON"),
        (#"{"op":"ping""#, "the request line is not valid JSON"),
        (#"{"scope":"x"}"#, "the request has no 'op' field"),
        (#"{"op":7}"#, "field 'op' has the wrong type"),
        (#"{"op":"token","minValiditySeconds":"300"}"#, "field 'minValiditySeconds' has the wrong type"),
    ])
    func badLineGetsBadRequestAndTheNextLineIsStillAnswered(line: String, message: String) throws {
        let channel = try ndjsonChannel(ScriptedResponder())
        let answers = try send(channel, line + "\n" + #"{"op":"ping","id":2}"# + "\n")
        #expect(answers.count == 2)
        #expect(answers.first?.ok == false)
        #expect(answers.first?.error?.code == "bad_request")
        #expect(answers.first?.error?.message == message)
        #expect(answers.last == BrokerResponse(id: .number(2), ok: true))
        #expect(channel.isActive)
        _ = try channel.finish()
    }

    /// docs/protocol.md: "Every response has `ok`, and `id` when the request had one."
    @Test(arguments: [
        (#"{"id":7,"op":5}"#, RequestID.number(7)),
        (#"{"id":"abc","scope":"https://storage.azure.com/.default"}"#, RequestID.string("abc")),
    ])
    func badRequestEchoesTheRequestID(line: String, id: RequestID) throws {
        let channel = try ndjsonChannel(ScriptedResponder())
        let answers = try send(channel, line + "\n")
        #expect(answers.first?.error?.code == "bad_request")
        #expect(answers.first?.id == id)
        _ = try channel.finish()
    }

    /// A JSON array is valid JSON but not a request: the message must say what a
    /// request looks like rather than name an empty field (`field '' has the wrong type`).
    @Test(arguments: [#"["op","ping"]"#, #"[]"#])
    func nonObjectJSONIsExplained(line: String) throws {
        let channel = try ndjsonChannel(ScriptedResponder())
        let answers = try send(channel, line + "\n")
        #expect(answers.first?.error?.code == "bad_request")
        let message = answers.first?.error?.message ?? ""
        #expect(!message.contains("''"), "message names an empty field: \(message)")
        #expect(message.contains("JSON object"))
        _ = try channel.finish()
    }

    @Test func lineOver64KiBIsTooLargeAndClosesTheConnection() throws {
        let responder = ScriptedResponder()
        let channel = try ndjsonChannel(responder)
        let huge = #"{"op":"ping","pad":""# + String(repeating: "A", count: 64 * 1024)
        let answers = try send(channel, huge)  // no newline needed: the limit is hit while buffering
        #expect(answers.count == 1)
        #expect(answers.first?.error?.code == "too_large")
        #expect(answers.first?.error?.message.contains("65536") == true)
        #expect(!channel.isActive)
        #expect(responder.requests.isEmpty)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    /// Answers gathered from one read are written before the refusal that ends it, in order.
    @Test func linesBeforeTooLargeInTheSameReadAreAnsweredFirst() throws {
        let channel = try ndjsonChannel(ScriptedResponder(), maxBytes: 32)
        let lines = #"{"op":"ping","id":1}"# + "\n" + #"{"op":"ping","id":2}"# + "\n" + String(repeating: "B", count: 40) + "\n"
        let answers = try send(channel, lines)
        #expect(answers.map(\.id) == [.number(1), .number(2), nil])
        #expect(answers.map { $0.error?.code } == [nil, nil, "too_large"])
        #expect(!channel.isActive)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test func linesAfterTooLargeAreNotAnswered() throws {
        let channel = try ndjsonChannel(ScriptedResponder(), maxBytes: 32)
        let answers = try send(channel, String(repeating: "B", count: 40) + "\n" + #"{"op":"ping","id":1}"# + "\n")
        #expect(answers.map { $0.error?.code } == ["too_large"])
        #expect(!channel.isActive)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }
}

@Suite struct NDJSONOrdering {
    private func asyncChannel(_ responder: ScriptedResponder) async throws -> NIOAsyncTestingChannel {
        let channel = try await NIOAsyncTestingChannel { channel in
            try channel.pipeline.syncOperations.addHandler(
                NIOConnectionHandler { NDJSONHandler(connection: $0, responder: responder, peer: testPeer, connectionGuard: testGuard()) })
        }
        try await channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/tb-test.sock")).get()
        return channel
    }

    /// The next `count` answers, however many writes carry them (answers ready together
    /// go out in one buffer).
    private func nextLines(_ channel: NIOAsyncTestingChannel, _ count: Int) async throws -> [BrokerResponse] {
        var text = ""
        while text.utf8.count(where: { $0 == UInt8(ascii: "\n") }) < count {
            text += try await channel.waitForOutboundWrite(as: ByteBuffer.self).text
        }
        return try responses(in: text)
    }

    @Test func anImmediateAnswerWaitsForThePendingOneBeforeIt() async throws {
        let responder = ScriptedResponder()
        let channel = try await asyncChannel(responder)
        try await channel.writeInbound(ByteBuffer(string: #"{"op":"token","scope":"slow","id":1}"# + "\n" + #"{"op":"ping","id":2}"# + "\n"))
        try await channel.writeInbound(ByteBuffer(string: #"{"op":"token","scope":"fast","id":3}"# + "\n"))
        await responder.waitForSlowArrivals(1)
        #expect(try await channel.readOutbound(as: ByteBuffer.self) == nil)  // the hits are held back
        responder.openGate()
        #expect(try await nextLines(channel, 3).map(\.id) == [.number(1), .number(2), .number(3)])
        #expect(channel.isActive)
        _ = try await channel.finish(acceptAlreadyClosed: true)
    }

    @Test func eofWithARequestInFlightAnswersItThenCloses() async throws {
        let responder = ScriptedResponder()
        let channel = try await asyncChannel(responder)
        try await channel.writeInbound(ByteBuffer(string: #"{"op":"token","scope":"slow","id":1}"# + "\n"))
        await responder.waitForSlowArrivals(1)
        try await channel.testingEventLoop.executeInContext {
            channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
        #expect(channel.isActive)  // still owes an answer
        responder.openGate()
        #expect(try await nextLines(channel, 1).map(\.token) == [ScriptedResponder.token(for: "slow")])
        try await channel.closeFuture.get()
        _ = try await channel.finish(acceptAlreadyClosed: true)
    }
}

@Suite("An answer repeated on one connection")
struct RepeatedAnswers {
    let scope = ScriptedResponder.repeatableScope

    private func line(_ request: BrokerRequest) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        return String(decoding: try encoder.encode(request), as: UTF8.self) + "\n"
    }

    @Test("a repeat is byte for byte the responder's answer with the request's own id, and is not worked out again")
    func repeatsCarryTheirOwnID() throws {
        let responder = ScriptedResponder()
        let channel = try ndjsonChannel(responder)
        let ids: [RequestID?] = [.number(1), .number(-42), .string("two"), nil, .string(#"q"uote\"#), .string("ünï"), .number(.max), .number(.min)]
        var sent = "", expected = ""
        for id in ids {
            let request = BrokerRequest(op: "token", id: id, scope: scope)
            sent += try line(request)
            expected += String(decoding: ScriptedResponder.answer(request).jsonBytes(), as: UTF8.self) + "\n"
        }
        try channel.writeInbound(ByteBuffer(string: sent))
        #expect(try drainOutbound(channel) == expected)
        #expect(responder.requests.count == 1, "only the first request reached the responder")
        #expect(responder.repeats.renewals == ids.count - 1)
        _ = try channel.finish()
    }

    @Test("the very same line again (id and all) is answered from the memo too, and falls back when the memo has expired")
    func identicalLines() throws {
        let responder = ScriptedResponder()
        let channel = try ndjsonChannel(responder)
        let request = BrokerRequest(op: "token", id: .string("same"), scope: scope)
        let expected = ScriptedResponder.answer(request)
        #expect(try send(channel, String(repeating: try line(request), count: 3)) == [expected, expected, expected])
        #expect(responder.requests.count == 1 && responder.repeats.renewals == 2)
        responder.repeats.verdict = .expired
        #expect(try send(channel, try line(request)) == [expected])
        #expect(responder.requests.count == 2)
        _ = try channel.finish()
    }

    @Test("a run of the very same line in one read is renewed once for all of it; a refusal instead goes to each, with its id")
    func runsOfTheSameLine() throws {
        let responder = ScriptedResponder()
        let channel = try ndjsonChannel(responder)
        let request = BrokerRequest(op: "token", id: .number(9), scope: scope)
        let text = try line(request)  // encoded once: JSONEncoder's key order may differ between encodings
        #expect(try send(channel, text) == [ScriptedResponder.answer(request)])
        #expect(try send(channel, String(repeating: text, count: 5)) == Array(repeating: ScriptedResponder.answer(request), count: 5))
        #expect(responder.repeats.renewals == 5 && responder.repeats.calls == 1, "five answers, one renewal call (\(responder.repeats.calls))")

        let refusal = WireError(code: .throttled, message: "slow down", retryable: true, retryAfter: 1)
        responder.repeats.verdict = .instead(.failure(id: nil, refusal))
        #expect(try send(channel, String(repeating: text, count: 4)) == Array(repeating: .failure(id: .number(9), refusal), count: 4))
        #expect(responder.repeats.renewals == 9 && responder.requests.count == 1)
        _ = try channel.finish()
    }

    @Test("an expired answer is worked out again, a refusal instead is sent with the request's id, and other requests are not repeats")
    func expiredInsteadAndOthers() throws {
        let responder = ScriptedResponder()
        let channel = try ndjsonChannel(responder)
        #expect(try send(channel, line(BrokerRequest(op: "token", id: .number(1), scope: scope))).map(\.ok) == [true])

        responder.repeats.verdict = .expired
        let again = try send(channel, line(BrokerRequest(op: "token", id: .number(2), scope: scope)))
        #expect(again == [ScriptedResponder.answer(BrokerRequest(op: "token", id: .number(2), scope: scope))])
        #expect(responder.requests.count == 2)

        responder.repeats.verdict = .instead(.failure(id: nil, WireError(code: .throttled, message: "slow down", retryable: true, retryAfter: 1)))
        let refused = try send(channel, line(BrokerRequest(op: "token", id: .number(3), scope: scope)))
        #expect(refused.map(\.id) == [.number(3)] && refused.first?.error?.code == "throttled")
        #expect(responder.requests.count == 2)

        // Differing in anything but the id: not a repeat.
        responder.repeats.verdict = .holds
        let renewals = responder.repeats.renewals
        for other in [
            BrokerRequest(op: "token", id: .number(4), scope: scope, minValiditySeconds: 60),
            BrokerRequest(op: "token", id: .number(5), scope: scope, identity: "default"),
            BrokerRequest(op: "token", id: .number(6), scope: "https://other.example/.default"),
            BrokerRequest(op: "ping", id: .number(7)),
        ] {
            #expect(try send(channel, line(other)) == [ScriptedResponder.answer(other)])
        }
        #expect(responder.requests.count == 6 && responder.repeats.renewals == renewals)
        _ = try channel.finish()
    }
}
