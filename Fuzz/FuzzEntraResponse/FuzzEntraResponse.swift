import Foundation
import TokenExchange

// Fuzzes the parser of Entra's token endpoint answers (`EntraTokenResponse.parse`):
// success bodies, error bodies with their AADSTS codes, and `Retry-After`.
//
// An input is a small text form of an HTTP answer, so that seeds read like the real
// thing and the fuzzer can vary status and headers as well as the body:
//
//     400                          ← status (anything else: 200 and all of it is body)
//     Retry-After: 30              ← header lines
//                                  ← empty line
//     {"error":"invalid_client",…} ← body
//
// Invariants: nothing traps; a token has a non-empty value and a lifetime of at most
// a year, with `refresh_in` inside it; the refresh and backoff arithmetic the cache
// does with it stays finite; an error's message never contains the assertion, and
// the Retry-After wait is within 0…1 h.

private enum Context {
    static let now = Date(timeIntervalSince1970: 1_795_914_123)
    static let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0."
        + "eyJhdWQiOlsiYXBpOi8vQXp1cmVBRFRva2VuRXhjaGFuZ2UiXSwiZXhwIjoxNzk1OTE3MTIzLCJpYXQiOjE3OTU5MTM1MjMsImlzcyI6Imh0dHBzOi8vb2lkYy5leGFtcGxlLyIsIm5iZiI6MTc5NTkxMzUyMywic3ViIjoic3lzdGVtOnNlcnZpY2VhY2NvdW50OnBheW1lbnRzOmxlZGdlci13cml0ZXIifQ."
        + "c2lnbmF0dXJlLW5vdC1jaGVja2Vk"
    static let assertion = try! Assertion(jwt: jwt, origin: "/var/run/secrets/azure/tokens/azure-identity-token", loadedAt: now)
    static let configuration = try! EntraConfiguration(tenantId: "72f988bf-86f1-41af-91ab-2d7cd011db47", clientId: "0f8c3e1a-5b7d-4a2e-9c61-3d2b1e4f5a6b")
    static let scope = Scope("https://storage.azure.com/.default")
}

/// A fixed generator: the arithmetic is checked, not the randomness.
private struct FixedGenerator: RandomNumberGenerator {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEntraResponse(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let response = upstreamResponse(Array(UnsafeBufferPointer(start: start, count: count)))
    do {
        let token = try EntraTokenResponse.parse(
            response, configuration: Context.configuration, scope: Context.scope, assertion: Context.assertion, now: Context.now)
        check(token)
    } catch {
        precondition(!error.message.isEmpty, "an error without a message")
        precondition(!error.message.contains(Context.jwt), "an error message shows the assertion")
        if let wait = error.retryAfter { precondition(wait >= .zero && wait <= .seconds(3600), "Retry-After outside 0…1 h") }
        var random = FixedGenerator()
        for attempt in [1, 2, 30, Int.max] {
            _ = RefreshPolicy().backoff(attempt: attempt, retryAfter: error.retryAfter, using: &random)
        }
        _ = error.description
    }
    return 0
}

private func check(_ token: AccessToken) {
    precondition(!token.value.isEmpty, "an empty token")
    precondition(token.lifetime > 0 && token.lifetime <= 365 * 24 * 3600, "lifetime \(token.lifetime)")
    if let refreshAt = token.refreshAt { precondition(refreshAt > token.issuedAt && refreshAt < token.expiresAt, "refresh_in outside the lifetime") }
    // What the cache and the wire do with the times (integer conversions trap on overflow).
    var random = FixedGenerator()
    let delay = RefreshPolicy().refreshDelay(for: token, using: &random)
    precondition(delay.isFinite && delay >= 0, "refresh delay \(delay)")
    _ = Duration.seconds(delay)
    _ = Int64(token.expiresAt.timeIntervalSince1970)
    _ = token.extendedExpiresAt.map { Int64($0.timeIntervalSince1970) }
    precondition(!token.description.contains(token.value) || token.value.count < 8, "a token's description shows the token")
}

/// Parses the input's text form (see the top of this file).
private func upstreamResponse(_ bytes: [UInt8]) -> UpstreamResponse {
    let blankLine = Array("\n\n".utf8)
    guard let first = bytes.first, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first), let split = bytes.firstRange(of: blankLine) else {
        return UpstreamResponse(status: 200, headers: [HeaderField("Content-Type", "application/json; charset=utf-8")], body: bytes)
    }
    let head = String(decoding: bytes[..<split.lowerBound], as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
    let status = Int(head[0].prefix(3)) ?? 200
    var headers: [HeaderField] = []
    for line in head.dropFirst() {
        let parts = line.split(separator: ":", maxSplits: 1)
        guard parts.count == 2 else { continue }
        headers.append(HeaderField(String(parts[0]), parts[1].trimmingCharacters(in: .whitespaces)))
    }
    return UpstreamResponse(status: status, headers: headers, body: Array(bytes[split.upperBound...]))
}
