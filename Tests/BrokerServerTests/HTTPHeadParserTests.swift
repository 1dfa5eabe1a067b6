import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import TestRandom
import Testing

@testable import BrokerServer

private func parse(_ text: String, maxHeadBytes: Int = 1024, maxFields: Int = 256) throws(HTTPHeadError) -> (HTTPHead, Int)? {
    let result = Array(text.utf8).withUnsafeBytes { raw in
        Result { () throws(HTTPHeadError) in try HTTPHeadParser.parse(raw, maxHeadBytes: maxHeadBytes, maxFields: maxFields, collectHeaders: true) }
    }
    return try result.get().map { ($0.head, $0.length) }
}

private func refusal(_ text: String, maxHeadBytes: Int = 1024, maxFields: Int = 256) -> HTTPHeadError? {
    do {
        _ = try parse(text, maxHeadBytes: maxHeadBytes, maxFields: maxFields)
        return nil
    } catch {
        return error
    }
}

/// The broker's own request-head parser: what it reads, what it refuses, and that it
/// reads what NIO's parser (llhttp) reads.
@Suite struct HTTPHeadParserTests {
    @Test func readsAHead() throws {
        let text = "GET /v1/token?scope=x HTTP/1.1\r\nHost: localhost\r\nUser-Agent:  curl/8.0 \r\nAccept: */*\r\n\r\nGET /next"
        let (head, length) = try #require(try parse(text))
        #expect(head.method == "GET" && head.target == "/v1/token?scope=x" && head.minorVersion == 1 && head.keepAlive)
        #expect(head.headers.map(\.name) == ["Host", "User-Agent", "Accept"])
        #expect(head.headers.map(\.value) == ["localhost", "curl/8.0", "*/*"])
        #expect(length == text.utf8.count - "GET /next".utf8.count)
        #expect(head.bodyLength == 0)
    }

    @Test func everyPrefixOfAHeadIsIncomplete() throws {
        let text = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        for end in 0..<text.utf8.count {
            #expect(try parse(String(decoding: Array(text.utf8).prefix(end), as: UTF8.self)) == nil, "\(end)")
        }
        #expect(try parse(text)?.0.keepAlive == false)
    }

    @Test func leniencies() throws {
        // Empty lines before the request line, and bare LFs.
        let (head, length) = try #require(try parse("\r\n\nGET / HTTP/1.0\nHost: x\n\n"))
        #expect(head.method == "GET" && head.minorVersion == 0 && !head.keepAlive && length == 27)
        #expect(head.headers.map(\.value) == ["x"])
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\n\r\n", true), ("GET / HTTP/1.0\r\n\r\n", false),
        ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true), ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
        ("GET / HTTP/1.1\r\nconnection: Upgrade, CLOSE\r\n\r\n", false), ("GET / HTTP/1.0\r\nConnection: TE,Keep-Alive\r\n\r\n", true),
        ("GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", true),
    ])
    func keepAlive(_ text: String, _ expected: Bool) throws {
        #expect(try parse(text)?.0.keepAlive == expected)
    }

    @Test func contentLength() throws {
        #expect(try parse("POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n")?.0.bodyLength == 42)
        #expect(try parse("POST / HTTP/1.1\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n")?.0.bodyLength == 7)
    }

    @Test(arguments: [
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",  // space before the colon
        "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\u{1}b\r\n\r\n",
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "GET / HTTP/1.1\r\nNo colon\r\n\r\n",
        "GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        "GET /é HTTP/1.1\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n", "GET / http/1.1\r\n\r\n", "GET /\r\n\r\n", "GET  / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1 \r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
    ])
    func refusesWhatParsersCouldReadDifferently(_ text: String) {
        guard case .malformed = refusal(text) else {
            Issue.record("not refused as malformed: \(text.debugDescription)")
            return
        }
    }

    @Test func whatCannotBecomeARequestLineIsRefusedAtOnce() {
        #expect(refusal("\u{16}\u{03}\u{01}\u{00}") == .malformed("the request does not start with a method"))
        #expect(refusal("GE\u{0}") != nil)
        #expect(refusal("GET") == nil)
        #expect(refusal("\r") == nil && refusal("\r\nGE") == nil, "an empty line before the request may arrive in pieces")
        #expect(refusal(String(repeating: "G", count: 33)) == .malformed("the method is longer than 32 bytes"))
        #expect(refusal(String(repeating: "G", count: 33) + " / HTTP/1.1\r\n\r\n") == .malformed("the method is longer than 32 bytes"))
    }

    /// Each empty line would make the handler read the head again: only a few are ignored.
    @Test func onlyAFewEmptyLinesBeforeTheRequestLine() throws {
        #expect(try parse(String(repeating: "\r\n", count: 8) + "GET / HTTP/1.1\r\n\r\n")?.0.method == "GET")
        #expect(refusal(String(repeating: "\r\n", count: 9)) == .malformed("more than 8 empty lines before the request line"))
    }

    @Test func limits() {
        #expect(refusal("GET /" + String(repeating: "a", count: 2000), maxHeadBytes: 1024) == .tooLarge)
        #expect(refusal("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 2000) + "\r\n\r\n", maxHeadBytes: 1024) == .tooLarge)
        #expect(refusal("GET / HTTP/1.1\r\n" + String(repeating: "X: y\r\n", count: 5) + "\r\n", maxFields: 4) == .tooManyFields(4))
        #expect(refusal("GET / HTTP/1.1\r\n" + String(repeating: "X: y\r\n", count: 4) + "\r\n", maxFields: 4) == nil)
    }

    /// On generated well-formed requests, the head as NIO's decoder (llhttp) reads it.
    @Test func readsWhatNIOReads() throws {
        var generator = SeededRandom()
        let methods = ["GET", "HEAD", "POST", "DELETE", "OPTIONS", "PUT"]
        let targets = [
            "/", "/v1/token?scope=https%3A%2F%2Fvault.azure.net%2F.default", "/healthz",
            "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x",
            "http://localhost/v1/status", "/x?a=1&b=%20", "*",
        ]
        let names = ["Host", "user-agent", "Accept", "X-IDENTITY-HEADER", "Metadata", "Connection", "X-Weird_Name!#$%&'*+.^`|~"]
        let values = ["localhost", "curl/8.5.0", "*/*", "true", "keep-alive", "close", "a b\tc", "", "  padded  ", "ünïcode", "Keep-Alive, Upgrade"]
        for _ in 0..<2000 {
            let version = Bool.random(using: &generator) ? "1.1" : "1.0"
            var text = "\(methods.randomElement(using: &generator)!) \(targets.randomElement(using: &generator)!) HTTP/\(version)\r\n"
            for _ in 0..<Int.random(in: 0...6, using: &generator) {
                text +=
                    "\(names.randomElement(using: &generator)!):\(Bool.random(using: &generator) ? " " : "")\(values.randomElement(using: &generator)!)\r\n"
            }
            text += "\r\n"
            let (ours, length) = try #require(try parse(text, maxHeadBytes: 4096), "\(text.debugDescription) (\(generator))")
            #expect(length == text.utf8.count, "\(text.debugDescription) (\(generator))")
            let nio = try #require(try nioHead(text), "\(text.debugDescription) (\(generator))")
            #expect(ours.method == nio.method.rawValue, "\(text.debugDescription) (\(generator))")
            #expect(ours.target == nio.uri, "\(text.debugDescription) (\(generator))")
            #expect(ours.minorVersion == nio.version.minor, "\(text.debugDescription) (\(generator))")
            let options = nio.headers["connection"].flatMap { $0.lowercased().split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
            if options.contains("close") {
                // With `keep-alive` too, NIO keeps an HTTP/1.0 connection open; `close` wins here (RFC 9112 §9.6).
                #expect(!ours.keepAlive, "\(text.debugDescription) (\(generator))")
            } else {
                #expect(ours.keepAlive == nio.isKeepAlive, "\(text.debugDescription) (\(generator))")
            }
            #expect(ours.headers.map(\.name) == nio.headers.map(\.name), "\(text.debugDescription) (\(generator))")
            // NIO keeps a value's trailing whitespace; RFC 9112 §5.1 says it is not part of it.
            let nioValues = nio.headers.map { String($0.value.reversed().drop { $0 == " " || $0 == "\t" }.reversed()) }
            #expect(ours.headers.map(\.value) == nioValues, "\(text.debugDescription) (\(generator))")
        }
    }

    private func nioHead(_ text: String) throws -> HTTPRequestHead? {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try channel.writeInbound(ByteBuffer(string: text))
        guard case .head(let head) = try channel.readInbound(as: HTTPServerRequestPart.self) else { return nil }
        return head
    }
}
