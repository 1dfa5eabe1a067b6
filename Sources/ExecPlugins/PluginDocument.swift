import FoundationEssentials
import Glibc
import TokenExchange

/// The exec protocol v1 documents (see `docs/plugins.md`): requests written to a plugin's
/// stdin, and the reading of its answer.
///
/// Versioning: `apiVersion` must be `tokenbroker/v1` exactly; fields a reader does not know
/// are ignored, so v1 can grow optional fields without breaking plugins or the broker.
enum PluginDocument {
    /// The only version spoken.
    static let apiVersion = "tokenbroker/v1"

    /// `{"apiVersion","kind":"AssertionRequest","audience"}`; `audience` only when configured.
    static func assertionRequest(audience: String?) -> [UInt8] {
        var document: [String: String] = ["apiVersion": apiVersion, "kind": "AssertionRequest"]
        if let audience { document["audience"] = audience }
        return encode(document)
    }

    /// `{"apiVersion","kind":"ExchangeRequest","assertion","scope"}`.
    static func exchangeRequest(assertion: String, scope: String) -> [UInt8] {
        encode(["apiVersion": apiVersion, "kind": "ExchangeRequest", "assertion": assertion, "scope": scope])
    }

    /// One JSON object on one line, keys sorted, ending in a newline.
    private static func encode(_ document: [String: String]) -> [UInt8] {
        UntypedJSON.serialize(document) + [UInt8(ascii: "\n")]
    }

    /// What a well-formed success answer carried.
    struct Answer: Sendable {
        /// `token`: never logged, never put into a message.
        var token: String
        /// `tokenType`, when given.
        var tokenType: String?
        /// `expiresAt`, when given.
        var expiresAt: Date?
    }

    /// Why an answer was not a success answer.
    enum Refusal: Error, Equatable {
        /// Not the expected document; the reason says what is wrong (no output text in it).
        case malformed(String)
        /// A `kind: Error` document: its sanitized message and whether to retry.
        case reported(message: String, retryable: Bool)
    }

    /// Reads `stdout` as a `kind` answer (`AssertionResponse` or `ExchangeResponse`); text it
    /// passes on goes through `UntrustedText`, with `secrets` redacted.
    static func parseAnswer(_ stdout: [UInt8], kind expectedKind: String, redacting secrets: [String] = []) -> Result<Answer, Refusal> {
        let text = String(decoding: stdout, as: UTF8.self).trimmed()
        guard !text.isEmpty else {
            return .failure(.malformed("printed nothing on stdout (expected a \(expectedKind) JSON document)"))
        }
        guard let document = UntypedJSON.object(text.utf8) else {
            return .failure(.malformed("printed \(stdout.count) bytes on stdout that are not a JSON object (expected a \(expectedKind) document)"))
        }
        guard let version = document["apiVersion"] as? String else {
            return .failure(.malformed("answered without a string 'apiVersion' (expected \"\(apiVersion)\")"))
        }
        guard version == apiVersion else {
            return .failure(.malformed("answered apiVersion \"\(UntrustedText.sanitize(version, redacting: secrets, limit: 64))\", but the broker speaks \"\(apiVersion)\""))
        }
        guard let kind = document["kind"] as? String else {
            return .failure(.malformed("answered without a string 'kind' (expected \"\(expectedKind)\" or \"Error\")"))
        }
        if kind == "Error" {
            let message = (document["message"] as? String).map { UntrustedText.sanitize($0, redacting: secrets, limit: 512) } ?? ""
            return .failure(.reported(message: message.isEmpty ? "(no message)" : message, retryable: isTrue(document["retryable"])))
        }
        guard kind == expectedKind else {
            return .failure(.malformed("answered kind \"\(UntrustedText.sanitize(kind, redacting: secrets, limit: 64))\", expected \"\(expectedKind)\" or \"Error\""))
        }
        guard let token = document["token"] as? String, !token.isEmpty else {
            return .failure(.malformed("answered \(expectedKind) without a non-empty string 'token'"))
        }
        var answer = Answer(token: token)
        if let type = document["tokenType"], !(type is JSONNull) {
            // Handed to callers as is: an identifier, or nothing.
            guard let type = UntrustedText.identifier(type as? String, redacting: secrets + [answer.token], limit: 64) else {
                return .failure(.malformed("answered a 'tokenType' that is not a short identifier such as \"Bearer\""))
            }
            answer.tokenType = type
        }
        if let value = document["expiresAt"], !(value is JSONNull) {
            guard let date = date(value) else {
                return .failure(.malformed("answered an 'expiresAt' that is neither an RFC 3339 time nor Unix seconds"))
            }
            answer.expiresAt = date
        }
        return .success(answer)
    }

    /// Only a JSON `true` counts (not `1`, not `"true"`).
    private static func isTrue(_ value: Any?) -> Bool {
        value as? Bool == true
    }

    /// RFC 3339 text (with or without fractional seconds) or Unix seconds (a JSON number,
    /// or a string of digits).
    static func date(_ value: Any) -> Date? {
        var seconds: Double?
        if let number = value as? Double {
            seconds = number
        } else if let text = value as? String {
            if !text.isEmpty, text.allSatisfy(\.isASCII), text.allSatisfy(\.isNumber) {
                seconds = Double(text)
            } else {
                return RFC3339.date(text)
            }
        }
        guard let seconds, seconds.isFinite, seconds > 0, seconds < 253_402_300_800 else { return nil }
        return Date(timeIntervalSince1970: seconds)
    }
}
