import FoundationEssentials

/// A token service's JSON answer — an OAuth success (RFC 6749 §5.1, RFC 8693 §2.2.1, Entra's
/// extra lifetimes) or an OAuth error (RFC 6749 §5.2, Entra's codes and ids) — with every
/// field the parsers read.
///
/// Lenient the way the parsers always were: a field that is absent, `null` or of another
/// type is nil (the parser then says which field it missed), never a failure of the whole
/// body; only a body that is not a JSON object is (`decode` returns nil).
struct UpstreamJSON: Decodable {
    var accessToken: String?
    var tokenType: String?
    var issuedTokenType: String?
    var scope: String?
    /// `expires_in` when it is a number; see `hasExpiresIn` for one that is present but is not.
    var expiresIn: LenientNumber?
    /// Whether `expires_in` is there and not `null`.
    var hasExpiresIn: Bool
    var refreshIn: LenientNumber?
    var extExpiresIn: LenientNumber?

    var error: String?
    var errorDescription: String?
    var errorURI: String?
    /// Entra's `error_codes`: the JSON numbers of the list (as `Int`, when under 10^15 in
    /// magnitude); anything else in it is skipped, and a field that is not a list is empty.
    var errorCodes: [Int]
    var traceId: String?
    var correlationId: String?

    private enum Key: String, CodingKey {
        case accessToken = "access_token", tokenType = "token_type", issuedTokenType = "issued_token_type", scope
        case expiresIn = "expires_in", refreshIn = "refresh_in", extExpiresIn = "ext_expires_in"
        case error, errorDescription = "error_description", errorURI = "error_uri", errorCodes = "error_codes"
        case traceId = "trace_id", correlationId = "correlation_id"
    }

    init(from decoder: any Decoder) throws {
        _ = try WellFormedJSON(from: decoder)
        let object = try decoder.container(keyedBy: Key.self)
        func value<T: Decodable>(_ key: Key) -> T? { object.lenient(key) }
        accessToken = value(.accessToken)
        tokenType = value(.tokenType)
        issuedTokenType = value(.issuedTokenType)
        scope = value(.scope)
        expiresIn = value(.expiresIn)
        hasExpiresIn = object.holds(.expiresIn)
        refreshIn = value(.refreshIn)
        extExpiresIn = value(.extExpiresIn)
        error = value(.error)
        errorDescription = value(.errorDescription)
        errorURI = value(.errorURI)
        errorCodes = (value(.errorCodes) as NumbersInList?)?.integers ?? []
        traceId = value(.traceId)
        correlationId = value(.correlationId)
    }

    /// The answer, or nil when `body` is empty or not a JSON object.
    static func decode(_ body: [UInt8]) -> UpstreamJSON? {
        guard !body.isEmpty else { return nil }
        return try? JSONDecoder().decode(UpstreamJSON.self, from: Data(body))
    }
}

/// Every value of a document read once. `JSONDecoder` checks a value only when it is read;
/// `JSONSerialization`, which the parsers of outside JSON used before, refused a whole body
/// that held a number beyond `Double` (`1e400`), a lone surrogate (`"\\ud800"`) or a leading
/// zero anywhere, and such a body is still not a JSON document rather than a token. Decode it
/// from the same decoder before the fields.
public struct WellFormedJSON: Decodable {
    public init(from decoder: any Decoder) throws {
        if var list = try? decoder.unkeyedContainer() {
            while !list.isAtEnd { _ = try list.decode(WellFormedJSON.self) }
        } else if let object = try? decoder.container(keyedBy: AnyKey.self) {
            for key in object.allKeys { _ = try object.decode(WellFormedJSON.self, forKey: key) }
        } else {
            let single = try decoder.singleValueContainer()
            guard !single.decodeNil(), (try? single.decode(Bool.self)) == nil, (try? single.decode(String.self)) == nil else { return }
            _ = try single.decode(Double.self)
        }
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}

extension KeyedDecodingContainer {
    /// The value at `key` when it is a `T`; nil when absent, `null` or of another type (the
    /// parsers then name the field they missed).
    public func lenient<T: Decodable>(_ key: Key) -> T? {
        (try? decodeIfPresent(T.self, forKey: key)) ?? nil
    }

    /// Whether `key` is there and not `null`.
    public func holds(_ key: Key) -> Bool {
        contains(key) && (try? decodeNil(forKey: key)) != true
    }
}

/// A number as token services send it: a JSON number, or a string holding one (some STSs
/// write `"expires_in":"3600"`). Only finite values decode; `"inf"`, `"1e400"`, a boolean or
/// anything else throws, so that the field counts as missing.
public struct LenientNumber: Decodable, Sendable {
    public var value: Double

    public init(from decoder: any Decoder) throws {
        let single = try decoder.singleValueContainer()
        if let number = try? single.decode(Double.self) {
            value = number
        } else {
            value = Double(try single.decode(String.self)) ?? .nan
        }
        guard value.isFinite else { throw DecodingError.dataCorruptedError(in: single, debugDescription: "not a finite number") }
    }
}

/// The integers among the elements of a JSON list (Entra's `error_codes`): numbers under
/// 10^15 in magnitude, cut to whole ones; strings, booleans and the rest are skipped.
private struct NumbersInList: Decodable {
    var integers: [Int] = []

    init(from decoder: any Decoder) throws {
        var list = try decoder.unkeyedContainer()
        while !list.isAtEnd {
            if let number = try? list.decode(Double.self) {
                if number.isFinite, abs(number) < 1e15 { integers.append(Int(number)) }
            } else if (try? list.decode(Skipped.self)) == nil {
                break
            }
        }
    }

    /// Any JSON value, read past.
    private struct Skipped: Decodable {
        init(from decoder: any Decoder) {}
    }
}

extension AccessToken {
    /// The longest lifetime taken at face value (one year): beyond it the numbers would
    /// overflow the integer conversions downstream, and no token service issues such tokens.
    static let maximumLifetime: TimeInterval = 365 * 24 * 3600

    /// Refuses an expiry a token service stated (an AWS `Expiration`, a JWT's `exp`) that is
    /// already past or more than `maximumLifetime` away, with `malformed` of the words the
    /// caller gives for each: `past` is told how many seconds ago it passed.
    static func checkStatedExpiry(
        _ expiry: Date, now: Date, past: (_ secondsAgo: Int) -> String, tooFar: String, malformed: (String) -> TokenExchangeError
    ) throws(TokenExchangeError) {
        let lifetime = expiry.timeIntervalSince(now)
        guard lifetime > 0 else { throw malformed(past(Int(-lifetime))) }
        guard lifetime <= maximumLifetime else { throw malformed(tooFar) }
    }
}
