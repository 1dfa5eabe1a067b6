import Foundation
import NIOCore
import TokenBrokerProtocol

/// Turns bytes into `BrokerRequest`s and `BrokerResponse`s into bytes, with
/// errors that say exactly what was wrong with a request.
enum WireCoding {
    /// Decodes one NDJSON request, or the `bad_request` error describing why not.
    static func decodeRequest(_ bytes: ByteBuffer) -> Result<BrokerRequest, WireError> {
        let data = Data(bytes.readableBytesView)
        guard (try? JSONSerialization.jsonObject(with: data, options: [])) != nil else {
            return .failure(WireError(code: .badRequest, message: "the request line is not valid JSON"))
        }
        do {
            return .success(try JSONDecoder().decode(BrokerRequest.self, from: data))
        } catch let DecodingError.keyNotFound(key, _) {
            return .failure(WireError(code: .badRequest, message: "the request has no '\(key.stringValue)' field"))
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            return .failure(WireError(code: .badRequest, message: "field '\(path(context.codingPath))' has the wrong type"))
        } catch let DecodingError.dataCorrupted(context) {
            let field = context.codingPath.isEmpty ? "the request" : "field '\(path(context.codingPath))'"
            return .failure(WireError(code: .badRequest, message: "\(field) is not a valid value; a request is a JSON object such as {\"op\":\"token\",\"scope\":\"…\"}"))
        } catch {
            return .failure(WireError(code: .badRequest, message: "the request could not be decoded"))
        }
    }

    private static func path(_ codingPath: [any CodingKey]) -> String {
        codingPath.map(\.stringValue).joined(separator: ".")
    }

    /// Encodes `response` as JSON (no trailing newline).
    static func encode(_ response: BrokerResponse, allocator: ByteBufferAllocator) -> ByteBuffer {
        allocator.buffer(bytes: response.jsonBytes())
    }

    /// The HTTP status that goes with an error code.
    static func httpStatus(for code: String) -> Int {
        switch WireErrorCode(rawValue: code) {
        case .badRequest, .unknownOp, .identityRequired: 400
        case .forbidden: 403
        case .unknownIdentity, .notFound: 404
        case .tooLarge: 413
        case .throttled: 429
        case .upstreamRejected: 502
        case .assertionUnavailable, .assertionExpired, .upstreamUnavailable, .shuttingDown: 503
        case .internal, nil: 500
        }
    }
}
