import Foundation
import TokenExchange

// Fuzzes JWT claim decoding: what the broker does with a token file's contents
// before anything is sent upstream. Each input is tried twice:
//  - as the whole compact JWS (`header.payload.signature`), which exercises the
//    splitting and base64url decoding;
//  - as the payload JSON, wrapped in a fixed header and signature, so that the
//    fuzzer mutates claims directly instead of having to keep base64url valid.
// Invariants: decoding never traps, decoded times are in the documented range, and
// an assertion's `description` (what logs see) never contains the token text.

private let now = Date(timeIntervalSince1970: 1_795_914_123)
private let header = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJWT(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    decode(String(decoding: bytes, as: UTF8.self))
    decode("\(header).\(Base64URL.encode(bytes)).c2ln")
    roundTripBase64URL(String(decoding: bytes, as: UTF8.self))
    return 0
}

private func decode(_ jwt: String) {
    guard let assertion = try? Assertion(jwt: jwt, origin: "/var/run/secrets/azure/tokens/azure-identity-token", loadedAt: now) else { return }
    let claims = assertion.claims
    for date in [claims.expiresAt, claims.notBefore, claims.issuedAt].compactMap({ $0 }) {
        precondition(date.timeIntervalSince1970 >= 0 && date.timeIntervalSince1970 < 253_402_300_800, "claim time out of range")
    }
    // The log form of an assertion: claims only, never the token. (A payload can be
    // as short as `{}`, whose base64url could appear by chance; only check long ones.)
    if jwt.utf8.count > 64 { precondition(!assertion.description.contains(jwt), "description shows the token") }
    _ = try? assertion.checkValidity(at: now)
    _ = try? assertion.checkValidity(at: Date(timeIntervalSince1970: 0), skew: 0, minimumRemaining: 0)
}

/// Whatever base64url text decodes to, encoding it again decodes to the same bytes.
private func roundTripBase64URL(_ text: String) {
    guard let data = Base64URL.decode(text) else { return }
    precondition(Base64URL.decode(Base64URL.encode(data)) == data, "base64url round trip changed the bytes")
}
