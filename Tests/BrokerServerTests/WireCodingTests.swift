import NIOCore
import Testing
import TokenBrokerProtocol

@testable import BrokerServer

@Suite struct WireCodingTests {
    /// JSONWriter's word-at-a-time escape check agrees with the byte-by-byte definition for every
    /// byte value at every position of a word and in the tail.
    @Test func escapeCheckMatchesTheDefinition() {
        let base = Array(repeating: UInt8(ascii: "A"), count: 19)
        for position in base.indices {
            for byte in UInt8(0)...0x7F {
                var bytes = base
                bytes[position] = byte
                let text = String(decoding: bytes, as: UTF8.self)
                let expected = byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
                #expect(JSONWriter.needsEscaping(text) == expected, "byte \(byte) at \(position)")
            }
        }
        #expect(!JSONWriter.needsEscaping("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl-_"))
        #expect(!JSONWriter.needsEscaping("bücher ✓ 𝄞 plain"))
        #expect(JSONWriter.needsEscaping("tab\there"))
    }

    /// What `JSONWriter` writes for answers of each shape, byte for byte as the wire has
    /// carried them (docs/protocol.md): fields in order, commas in nested objects and
    /// arrays, escapes.
    @Test(arguments: [
        (
            BrokerResponse(
                id: .number(7), ok: true, token: "eyJ0eXAiOiJKV1QifQ.e30.c2ln", tokenType: "Bearer", expiresOn: 1_764_400_000, expiresIn: 3599,
                identity: "default", scope: "https://storage.azure.com/.default"),
            #"{"id":7,"ok":true,"token":"eyJ0eXAiOiJKV1QifQ.e30.c2ln","tokenType":"Bearer","expiresOn":1764400000,"expiresIn":3599,"identity":"default","scope":"https://storage.azure.com/.default"}"#
        ),
        (
            BrokerResponse(id: .string("needs \"escaping\""), ok: true, token: "tab\there\u{1}\\", scope: "bücher/✓"),
            #"{"id":"needs \"escaping\"","ok":true,"token":"tab\there\u0001\\","scope":"bücher/✓"}"#
        ),
        (
            BrokerResponse.failure(
                id: .number(-1),
                WireError(
                    code: .upstreamRejected, message: "no", retryable: false, retryAfter: 3,
                    upstream: UpstreamErrorDetails(status: 400, codes: [700016, 1], error: "invalid_client", traceId: "t"))),
            #"{"id":-1,"ok":false,"error":{"code":"upstream_rejected","message":"no","retryable":false,"retryAfter":3,"upstream":{"status":400,"codes":[700016,1],"error":"invalid_client","traceId":"t"}}}"#
        ),
        (
            BrokerResponse(
                id: nil, ok: true, expiresOn: 1, identity: "aws",
                credentials: AWSCredentialsObject(accessKeyId: "AKIA", secretAccessKey: "s", sessionToken: "t", expiration: "2026-11-29T05:00:00Z")),
            #"{"ok":true,"expiresOn":1,"identity":"aws","credentials":{"accessKeyId":"AKIA","secretAccessKey":"s","sessionToken":"t","expiration":"2026-11-29T05:00:00Z"}}"#
        ),
    ])
    func answersAreWrittenAsTheWireHasCarriedThem(_ response: BrokerResponse, _ expected: String) {
        #expect(String(decoding: response.jsonBytes(), as: UTF8.self) == expected)
        let buffer = WireCoding.encode(response, allocator: ByteBufferAllocator(), newline: true)
        #expect(String(buffer: buffer) == expected + "\n")
    }

    /// A status answer with every part, byte for byte (`BrokerStatus.write` and the
    /// writers of its parts).
    @Test func aStatusAnswerIsWrittenAsTheWireHasCarriedIt() {
        let error = WireError(code: .throttled, message: "m", retryable: true)
        let status = BrokerStatus(
            version: 1, ready: true,
            identities: [
                IdentityStatus(name: "a", exchange: "entra", source: "file", clientId: "c", cachedScopes: ["s1", "s2"], lastError: error),
                IdentityStatus(name: "b", exchange: "aws", source: "exec", cachedScopes: []),
            ],
            compat: CompatStatus(identityEndpoint: "http://127.0.0.1:1/msi/token", socket: "/run/c.sock"),
            pod: PodStatus(uid: "u", tokens: ["t"], serviceAccounts: ["ns/sa", "ns/sb"], exchange: "entra"),
            sinks: [
                SinkStatus(path: "/p", identity: "a", scope: "s1", format: "token", lastWrite: 5, expiresOn: 6),
                SinkStatus(path: "/q", identity: "b", scope: "r", format: "env", lastError: error),
            ])
        let expected =
            #"{"id":"s","ok":true,"status":{"version":1,"ready":true,"identities":["#
            + #"{"name":"a","exchange":"entra","source":"file","clientId":"c","cachedScopes":["s1","s2"],"lastError":{"code":"throttled","message":"m","retryable":true}},"#
            + #"{"name":"b","exchange":"aws","source":"exec","cachedScopes":[]}],"#
            + #""compat":{"identityEndpoint":"http://127.0.0.1:1/msi/token","socket":"/run/c.sock"},"#
            + #""pod":{"uid":"u","tokens":["t"],"serviceAccounts":["ns/sa","ns/sb"],"exchange":"entra"},"#
            + #""sinks":[{"path":"/p","identity":"a","scope":"s1","format":"token","lastWrite":5,"expiresOn":6},"#
            + #"{"path":"/q","identity":"b","scope":"r","format":"env","lastError":{"code":"throttled","message":"m","retryable":true}}]}}"#
        #expect(String(decoding: BrokerResponse(id: .string("s"), ok: true, status: status).jsonBytes(), as: UTF8.self) == expected)
    }

    /// Each level of nesting keeps its own comma state across the levels within it (the
    /// writer's comma stack is a bit per level).
    @Test func nestedContainersGetTheirCommas() {
        var writer = JSONWriter()
        for level in 0..<40 {
            writer.beginObject()
            writer.field("l", level)
            writer.key("n")
        }
        writer.beginObject()
        writer.endObject()
        for _ in 0..<40 {
            writer.field("a", true)
            writer.endObject()
        }
        let expected = (0..<40).map { #"{"l":\#($0),"n":"# }.joined() + "{}" + String(repeating: #","a":true}"#, count: 40)
        #expect(writer.text == expected)
    }

    /// An answer encoded without an id, with the id spliced in, is what encoding it with
    /// the id writes (token answers, AWS credentials, errors).
    @Test(arguments: [
        BrokerResponse(
            id: nil, ok: true, token: "eyJ0eXAiOiJKV1QifQ.e30.c2ln", tokenType: "Bearer", expiresOn: 1_764_400_000, expiresIn: 3599,
            identity: "default", scope: "https://storage.azure.com/.default"),
        BrokerResponse(
            id: nil, ok: true, expiresOn: 1, expiresIn: 2, identity: "aws", scope: "sts",
            credentials: AWSCredentialsObject(accessKeyId: "AKIA", secretAccessKey: "s", sessionToken: "t", expiration: "2026-11-29T05:00:00Z")),
        BrokerResponse(id: nil, ok: true, token: "tab\there"),
        .failure(id: nil, WireError(code: .throttled, message: "slow down", retryable: true, retryAfter: 1)),
    ])
    func idsSplicedIntoAnAnswerEncodedWithout(_ response: BrokerResponse) throws {
        let encoded = WireCoding.encode(response, allocator: ByteBufferAllocator(), newline: true)
        for id: RequestID? in [nil, .number(0), .number(.min), .number(.max), .string(""), .string("req-1"), .string("ünï")] {
            var withID = response
            withID.id = id
            let spliced = try #require(WireCoding.withID(id, encodedWithoutID: encoded, allocator: ByteBufferAllocator()))
            #expect(Array(spliced.readableBytesView) == withID.jsonBytes() + [UInt8(ascii: "\n")])
        }
        #expect(WireCoding.withID(.string("needs \"escaping\""), encodedWithoutID: encoded, allocator: ByteBufferAllocator()) == nil)
    }
}
