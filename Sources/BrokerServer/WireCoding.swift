import Foundation
import NIOCore
import TokenBrokerProtocol

/// Turns bytes into `BrokerRequest`s and `BrokerResponse`s into bytes, with
/// errors that say exactly what was wrong with a request.
enum WireCoding {
    /// Decodes one NDJSON request, or the `bad_request` error describing why not
    /// (with the request's `id` when one could be read, so the caller can match it).
    static func decodeRequest(_ bytes: ByteBuffer) -> Result<BrokerRequest, DecodeFailure> {
        let data = Data(bytes.readableBytesView)
        guard let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else {
            return .failure(DecodeFailure(id: nil, WireError(code: .badRequest, message: "the request line is not valid JSON")))
        }
        guard let fields = object as? [String: Any] else {
            return .failure(DecodeFailure(id: nil, WireError(code: .badRequest, message: "a request must be a JSON object such as {\"op\":\"token\",\"scope\":\"…\"}")))
        }
        let id: RequestID? = (fields["id"] as? String).map(RequestID.string)
            ?? (fields["id"] as? NSNumber).flatMap { Int64(exactly: $0.doubleValue) }.map(RequestID.number)
        func failure(_ message: String) -> Result<BrokerRequest, DecodeFailure> {
            .failure(DecodeFailure(id: id, WireError(code: .badRequest, message: message)))
        }
        do {
            return .success(try JSONDecoder().decode(BrokerRequest.self, from: data))
        } catch let DecodingError.keyNotFound(key, _) {
            return failure("the request has no '\(key.stringValue)' field")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            return failure("field '\(path(context.codingPath))' has the wrong type")
        } catch let DecodingError.dataCorrupted(context) {
            return failure("field '\(path(context.codingPath))' is not a valid value")
        } catch {
            return failure("the request could not be decoded")
        }
    }

    /// A request that could not be decoded, with its `id` if it had a readable one.
    struct DecodeFailure: Error {
        var id: RequestID?
        var error: WireError
        init(id: RequestID?, _ error: WireError) {
            self.id = id
            self.error = error
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
