import NIOCore
import Testing
import TokenBrokerProtocol

@testable import BrokerServer

/// The canned bytes of `WireBytes`, byte for byte as they went out when each place wrote
/// them by hand.
@Suite struct WireBytesTests {
    private static let body = #"{"ok":false,"error":{"code":"bad_request","message":"too slow; closing","retryable":false}}"#

    @Test func aRefusalOnAnNDJSONConnectionIsOneErrorLine() {
        let bytes = WireBytes.refusal(.badRequest, "too slow; closing", httpStatus: nil, allocator: ByteBufferAllocator())
        #expect(String(buffer: bytes) == Self.body + "\n")
    }

    @Test func aRefusalOnAnHTTPConnectionClosesItWithoutCacheControl() {
        let bytes = WireBytes.refusal(.badRequest, "too slow; closing", httpStatus: 408, allocator: ByteBufferAllocator())
        #expect(
            String(buffer: bytes)
                == "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: \(Self.body.utf8.count)\r\nConnection: close\r\n\r\n"
                + Self.body)
    }

    @Test func anAnswersHeadNamesItsLengthAndForbidsCaching() {
        var head = ByteBufferAllocator().buffer(capacity: 0)
        WireBytes.writeHTTPHead(
            into: &head, code: 200, contentType: WireBytes.jsonContentType, contentLength: 12,
            extraHeaders: [("Retry-After", "3"), ("X-Split", "a\r\nb")], keepAlive: true)
        #expect(
            String(buffer: head)
                == "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\nCache-Control: no-store\r\nRetry-After: 3\r\nConnection: keep-alive\r\n\r\n"
        )
        head.clear()
        WireBytes.writeHTTPHead(into: &head, code: 429, contentType: "text/plain", contentLength: 0, keepAlive: false)
        #expect(
            String(buffer: head)
                == "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        )
    }
}
