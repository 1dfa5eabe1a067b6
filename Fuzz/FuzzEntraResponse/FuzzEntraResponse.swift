import Foundation
import TokenExchange

// Fuzzes the parsers of token service answers: Entra's (`EntraTokenResponse.parse`: success
// bodies, error bodies with their AADSTS codes, `Retry-After`), and on the same input the
// RFC 8693 (`RFC8693TokenResponse.parse`) and AWS STS (`AWSSTSTokenResponse.parse`) ones.
//
// An input is a small text form of an HTTP answer, so that seeds read like the real
// thing and the fuzzer can vary status and headers as well as the body:
//
//     400                          ← status (anything else: 200 and all of it is body)
//     Retry-After: 30              ← header lines
//                                  ← empty line
//     {"error":"invalid_client",…} ← body
//
// Echoes: before parsing, `@A` becomes the assertion, `@S` the RFC 8693 client secret, `@E`
// that secret form-encoded and `@B` the `Basic` credentials the RFC 8693 request carried —
// in the head as in the body — so that inputs can echo what a token service was sent.
//
// Invariants: nothing traps; a token has a non-empty value and a lifetime of at most
// a year, with `refresh_in` inside it; the refresh and backoff arithmetic the cache
// does with it stays finite; the Retry-After wait is within 0…1 h; no field of an error
// (message, upstream error, trace and correlation ids), no token type and no warning
// contains a secret the request carried, a control character or a line separator, and
// the ids are at most 128 characters.

private enum Context {
    static let now = Date(timeIntervalSince1970: 1_795_914_123)
    static let jwt =
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0."
        + "eyJhdWQiOlsiYXBpOi8vQXp1cmVBRFRva2VuRXhjaGFuZ2UiXSwiZXhwIjoxNzk1OTE3MTIzLCJpYXQiOjE3OTU5MTM1MjMsImlzcyI6Imh0dHBzOi8vb2lkYy5leGFtcGxlLyIsIm5iZiI6MTc5NTkxMzUyMywic3ViIjoic3lzdGVtOnNlcnZpY2VhY2NvdW50OnBheW1lbnRzOmxlZGdlci13cml0ZXIifQ."
        + "c2lnbmF0dXJlLW5vdC1jaGVja2Vk"
    static let assertion = try! Assertion(jwt: jwt, origin: "/var/run/secrets/azure/tokens/azure-identity-token", loadedAt: now)
    static let configuration = try! EntraConfiguration(
        tenantId: "72f988bf-86f1-41af-91ab-2d7cd011db47", clientId: "0f8c3e1a-5b7d-4a2e-9c61-3d2b1e4f5a6b")
    static let scope = Scope("https://storage.azure.com/.default")

    static let clientSecret = "s3cr3t+/=Value_0123"
    static let formSecret = "s3cr3t%2B%2F%3DValue_0123"
    static let rfc8693 = try! RFC8693Configuration(
        tokenEndpoint: "https://sts.example.com/oauth2/token", audience: "urn:example:payments",
        clientId: "ledger-client", clientSecret: clientSecret)
    static let basic = Data("ledger-client:\(formSecret)".utf8).base64EncodedString()
    static let aws = try! AWSSTSConfiguration(roleArn: "arn:aws:iam::123456789012:role/ledger-writer")

    static let echoes: [(placeholder: [UInt8], value: [UInt8])] = [("@A", jwt), ("@S", clientSecret), ("@E", formSecret), ("@B", basic)]
        .map { (Array($0.0.utf8), Array($0.1.utf8)) }
    /// What each parser's request carried.
    static let entraSecrets = [jwt]
    static let rfc8693Secrets = [jwt, clientSecret, formSecret, basic]
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
    let response = upstreamResponse(echoing(Array(UnsafeBufferPointer(start: start, count: count))))
    do {
        let token = try EntraTokenResponse.parse(
            response, configuration: Context.configuration, scope: Context.scope, assertion: Context.assertion, now: Context.now)
        check(token)
        checkText(token.tokenType, secrets: Context.entraSecrets)
    } catch {
        check(error, secrets: Context.entraSecrets)
    }
    do {
        let outcome = try RFC8693TokenResponse.parse(
            response, configuration: Context.rfc8693, scope: Context.scope, assertion: Context.assertion, now: Context.now)
        check(outcome.token)
        for text in outcome.warnings + [outcome.token.tokenType] { checkText(text, secrets: Context.rfc8693Secrets) }
    } catch {
        check(error, secrets: Context.rfc8693Secrets)
    }
    do {
        check(try AWSSTSTokenResponse.parse(response, configuration: Context.aws, assertion: Context.assertion, now: Context.now))
    } catch {
        check(error, secrets: Context.entraSecrets)
    }
    return 0
}

private func check(_ error: TokenExchangeError, secrets: [String]) {
    precondition(!error.message.isEmpty, "an error without a message")
    for text in [error.message, error.upstream?.error, error.upstream?.traceId, error.upstream?.correlationId].compactMap({ $0 }) {
        checkText(text, secrets: secrets)
    }
    for id in [error.upstream?.traceId, error.upstream?.correlationId].compactMap({ $0 }) {
        precondition(id.count <= 128, "an upstream id of \(id.count) characters")
    }
    if let wait = error.retryAfter { precondition(wait >= .zero && wait <= .seconds(3600), "Retry-After outside 0…1 h") }
    var random = FixedGenerator()
    for attempt in [1, 2, 30, Int.max] {
        _ = RefreshPolicy().backoff(attempt: attempt, retryAfter: error.retryAfter, using: &random)
    }
    _ = error.description
}

/// No secret, nor a long piece of one; no control character or line separator.
private func checkText(_ text: String, secrets: [String]) {
    for secret in secrets {
        precondition(!text.contains(secret), "a secret reached a field: \(text)")
        let characters = Array(secret)
        for start in stride(from: 0, to: max(0, characters.count - 24), by: 8) {
            precondition(!text.contains(String(characters[start..<(start + 24)])), "a piece of a secret reached a field: \(text)")
        }
    }
    precondition(
        !text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0 == "\u{2028}" || $0 == "\u{2029}" },
        "a control character reached a field")
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

/// The input with every placeholder (`@A`, `@S`, `@E`, `@B`) replaced by what it stands for.
private func echoing(_ bytes: [UInt8]) -> [UInt8] {
    guard bytes.contains(UInt8(ascii: "@")) else { return bytes }
    var out: [UInt8] = []
    var index = 0
    outer: while index < bytes.count {
        for echo in Context.echoes where bytes[index...].starts(with: echo.placeholder) {
            out += echo.value
            index += echo.placeholder.count
            continue outer
        }
        out.append(bytes[index])
        index += 1
    }
    return out
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
