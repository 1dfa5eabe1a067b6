import FoundationEssentials
import Glibc
import PlainJSON
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
        encode(Request(kind: "AssertionRequest", audience: audience))
    }

    /// `{"apiVersion","kind":"ExchangeRequest","assertion","scope"}`.
    static func exchangeRequest(assertion: String, scope: String) -> [UInt8] {
        encode(Request(kind: "ExchangeRequest", assertion: assertion, scope: scope))
    }

    /// A request document; absent fields are left out.
    private struct Request: Encodable {
        var apiVersion = PluginDocument.apiVersion
        var kind: String
        var audience: String?
        var assertion: String?
        var scope: String?
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// One JSON object on one line, keys sorted, ending in a newline.
    private static func encode(_ request: Request) -> [UInt8] {
        // Strings only: encoding cannot fail.
        Array((try? encoder.encode(request)) ?? Data("{}".utf8)) + [UInt8(ascii: "\n")]
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
        guard let document = try? JSONDecoder().decode(AnswerFields.self, from: Data(text.utf8)) else {
            return .failure(.malformed("printed \(stdout.count) bytes on stdout that are not a JSON object (expected a \(expectedKind) document)"))
        }
        guard let version = document.apiVersion else {
            return .failure(.malformed("answered without a string 'apiVersion' (expected \"\(apiVersion)\")"))
        }
        guard version == apiVersion else {
            return .failure(
                .malformed(
                    "answered apiVersion \"\(UntrustedText.sanitize(version, redacting: secrets, limit: 64))\", but the broker speaks \"\(apiVersion)\""
                ))
        }
        guard let kind = document.kind else {
            return .failure(.malformed("answered without a string 'kind' (expected \"\(expectedKind)\" or \"Error\")"))
        }
        if kind == "Error" {
            let message = document.message.map { UntrustedText.sanitize($0, redacting: secrets, limit: 512) } ?? ""
            return .failure(.reported(message: message.isEmpty ? "(no message)" : message, retryable: document.retryable))
        }
        guard kind == expectedKind else {
            return .failure(
                .malformed(
                    "answered kind \"\(UntrustedText.sanitize(kind, redacting: secrets, limit: 64))\", expected \"\(expectedKind)\" or \"Error\""))
        }
        guard let token = document.token, !token.isEmpty else {
            return .failure(.malformed("answered \(expectedKind) without a non-empty string 'token'"))
        }
        var answer = Answer(token: token)
        if document.hasTokenType {
            // Handed to callers as is: an identifier, or nothing.
            guard let type = UntrustedText.identifier(document.tokenType, redacting: secrets + [answer.token], limit: 64) else {
                return .failure(.malformed("answered a 'tokenType' that is not a short identifier such as \"Bearer\""))
            }
            answer.tokenType = type
        }
        if document.hasExpiresAt {
            guard let date = document.expiresAt.flatMap(date) else {
                return .failure(.malformed("answered an 'expiresAt' that is neither an RFC 3339 time nor Unix seconds"))
            }
            answer.expiresAt = date
        }
        return .success(answer)
    }

    /// An answer's fields, each nil when absent or of another type; a body that is not
    /// well-formed JSON anywhere, or not an object, does not decode.
    private struct AnswerFields: Decodable {
        var apiVersion: String?
        var kind: String?
        var message: String?
        /// Only a JSON `true` counts (not `1`, not `"true"`).
        var retryable: Bool
        var token: String?
        var tokenType: String?
        var hasTokenType: Bool
        var expiresAt: DateValue?
        var hasExpiresAt: Bool

        private enum Key: String, CodingKey { case apiVersion, kind, message, retryable, token, tokenType, expiresAt }

        init(from decoder: any Decoder) throws {
            _ = try WellFormedJSON(from: decoder)
            let object = try decoder.container(keyedBy: Key.self)
            apiVersion = object.lenient(.apiVersion)
            kind = object.lenient(.kind)
            message = object.lenient(.message)
            retryable = object.lenient(.retryable) == true
            token = object.lenient(.token)
            tokenType = object.lenient(.tokenType)
            hasTokenType = object.holds(.tokenType)
            expiresAt = object.lenient(.expiresAt)
            hasExpiresAt = object.holds(.expiresAt)
        }
    }

    /// `expiresAt` as sent: a JSON number or a string (a boolean or anything else does not decode).
    enum DateValue: Decodable, Equatable {
        case number(Double)
        case text(String)

        init(from decoder: any Decoder) throws {
            let single = try decoder.singleValueContainer()
            if let number = try? single.decode(Double.self) {
                self = .number(number)
            } else {
                self = .text(try single.decode(String.self))
            }
        }
    }

    /// RFC 3339 text (with or without fractional seconds) or Unix seconds (a JSON number,
    /// or a string of digits).
    static func date(_ value: DateValue) -> Date? {
        let seconds: Double?
        switch value {
        case .number(let number):
            seconds = number
        case .text(let text):
            guard !text.isEmpty, text.allSatisfy(\.isASCII), text.allSatisfy(\.isNumber) else { return RFC3339.date(text) }
            seconds = Double(text)
        }
        guard let seconds, seconds.isFinite, seconds > 0, seconds < 253_402_300_800 else { return nil }
        return Date(timeIntervalSince1970: seconds)
    }
}
