import NIOCore
import NIOHTTP1
import TokenBrokerProtocol

/// The fixed bytes this server writes, in one place and named by what they are: the NDJSON
/// line end, the `"id"` spliced into a remembered answer, the HTTP/1.1 head an answer is
/// framed in, and the refusal a connection gets before it is closed. Written by hand, not
/// by NIOHTTP1's encoder: a whole answer is one buffer and one write (docs/benchmarks.md).
enum WireBytes {
    /// Ends each NDJSON answer.
    static let lineEnd = UInt8(ascii: "\n")

    /// Replaces the `{` of an answer encoded without an `id`, for a number `id`; the number
    /// and `numberIDEnd` follow (what `JSONWriter` writes for the field).
    static let numberIDOpening: StaticString = #"{"id":"#
    static let numberIDEnd: StaticString = ","
    /// The same for a string `id` that needs no escaping.
    static let stringIDOpening: StaticString = #"{"id":""#
    static let stringIDEnd: StaticString = #"","#

    /// `Content-Type` of JSON answers.
    static let jsonContentType = "application/json"
    /// `Content-Type` of `/metrics` (Prometheus' text format).
    static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

    private static let okStatusLine: StaticString = "HTTP/1.1 200 OK\r\n"
    private static let contentTypeName: StaticString = "Content-Type: "
    private static let contentLengthName: StaticString = "\r\nContent-Length: "
    private static let fieldEnd: StaticString = "\r\n"
    private static let noStoreField: StaticString = "Cache-Control: no-store\r\n"
    private static let keepAliveEnd: StaticString = "Connection: keep-alive\r\n\r\n"
    private static let closeEnd: StaticString = "Connection: close\r\n\r\n"

    /// Writes an HTTP/1.1 answer's head into `message`: status line (NIO's reason phrase),
    /// `Content-Type`, `Content-Length`, `Cache-Control: no-store` when `noStore`,
    /// `extraHeaders`, `Connection`, and the blank line. Header fields come from this
    /// process, never from a request; one with a CR, LF or NUL would still split the answer,
    /// so it is dropped rather than sent.
    static func writeHTTPHead(
        into message: inout ByteBuffer, code: Int, contentType: String, contentLength: Int, noStore: Bool = true,
        extraHeaders: [(name: String, value: String)] = [], keepAlive: Bool
    ) {
        if code == 200 {
            message.writeStaticString(okStatusLine)
        } else {
            let status = HTTPResponseStatus(statusCode: code)
            message.writeString("HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\n")
        }
        message.writeStaticString(contentTypeName)
        message.writeString(contentType)
        message.writeStaticString(contentLengthName)
        message.writeString(String(contentLength))
        message.writeStaticString(fieldEnd)
        if noStore { message.writeStaticString(noStoreField) }
        for field in extraHeaders where !(field.name + field.value).utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) {
            message.writeString("\(field.name): \(field.value)\r\n")
        }
        message.writeStaticString(keepAlive ? keepAliveEnd : closeEnd)
    }

    /// The answer to a connection that is refused before the last of its requests could be
    /// answered (a first byte that is neither protocol, a request too slow to arrive):
    /// `{"ok":false,"error":{…}}` as an NDJSON line, or for HTTP (`httpStatus`) as the body
    /// of an answer that closes the connection.
    static func refusal(_ code: WireErrorCode, _ message: String, httpStatus: Int?, allocator: ByteBufferAllocator) -> ByteBuffer {
        let body = BrokerResponse.failure(id: nil, WireError(code: code, message: message)).jsonBytes()
        var bytes = allocator.buffer(capacity: body.count + 128)
        if let httpStatus {
            // Without Cache-Control, as this refusal has always been sent.
            writeHTTPHead(into: &bytes, code: httpStatus, contentType: jsonContentType, contentLength: body.count, noStore: false, keepAlive: false)
            bytes.writeBytes(body)
        } else {
            bytes.writeBytes(body)
            bytes.writeInteger(lineEnd)
        }
        return bytes
    }
}
