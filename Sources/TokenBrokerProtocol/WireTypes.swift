/// Version 1 of the broker's socket protocol (docs/protocol.md is normative).
///
/// NDJSON: one `BrokerRequest` per line, one `BrokerResponse` per line, in
/// request order. HTTP/1.1 on the same socket returns the same JSON bodies.
public enum WireProtocol {
    /// The protocol version these types implement.
    public static let version = 1
    /// The longest request line (or HTTP head) accepted, 64 KiB.
    public static let maxRequestBytes = 64 * 1024
    /// The socket path when neither `--socket` nor `TOKENBROKER_SOCKET` is given.
    public static let defaultSocketPath = "/run/tokenbroker/broker.sock"
    /// The environment variable clients read the socket path from.
    public static let socketEnvironmentVariable = "TOKENBROKER_SOCKET"
}

/// A request's `id`, echoed in its response: a number or a string.
public enum RequestID: Codable, Sendable, Hashable {
    case number(Int64)
    case string(String)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Int64.self) {
            self = .number(number)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .number(let n): try container.encode(n)
        case .string(let s): try container.encode(s)
        }
    }
}

/// One request: `{"op":"token","scope":"https://storage.azure.com/.default","id":7}`.
public struct BrokerRequest: Codable, Sendable, Equatable {
    /// `token`, `status` or `ping`.
    public var op: String
    /// Echoed in the response.
    public var id: RequestID?
    /// The scope to get a token for (`token`).
    public var scope: String?
    /// IMDS-style resource; mapped to `resource/.default` when `scope` is absent.
    public var resource: String?
    /// Which identity; may be omitted when the caller is allowed exactly one.
    public var identity: String?
    /// Serve a cached token only if it is valid for at least this long (default 300).
    public var minValiditySeconds: Int?
    /// Node mode: the Entra application (client) id to trade the caller's pod token for.
    public var clientId: String?
    /// Node mode: the Entra tenant, when not the configured one.
    public var tenantId: String?
    /// Node mode: which projected token of the caller's pod (`VOLUME` or `VOLUME/FILE`),
    /// when it has several.
    public var volume: String?

    /// Creates a request.
    public init(
        op: String, id: RequestID? = nil, scope: String? = nil, resource: String? = nil, identity: String? = nil, minValiditySeconds: Int? = nil,
        clientId: String? = nil, tenantId: String? = nil, volume: String? = nil
    ) {
        self.op = op
        self.id = id
        self.scope = scope
        self.resource = resource
        self.identity = identity
        self.minValiditySeconds = minValiditySeconds
        self.clientId = clientId
        self.tenantId = tenantId
        self.volume = volume
    }
}

/// One response. Which fields are present depends on `ok` and the op.
public struct BrokerResponse: Codable, Sendable, Equatable {
    /// The request's `id`, when it had one.
    public var id: RequestID?
    /// Whether the request succeeded.
    public var ok: Bool

    // token
    /// The access token.
    public var token: String?
    /// Usually `Bearer`.
    public var tokenType: String?
    /// Expiry as Unix seconds.
    public var expiresOn: Int64?
    /// Seconds until expiry at the time of the response.
    public var expiresIn: Int64?
    /// The identity that served the token.
    public var identity: String?
    /// The scope the token is for.
    public var scope: String?
    /// AWS credentials, for identities whose exchange is AWS STS (instead of `token`).
    public var credentials: AWSCredentialsObject?
    /// Node mode: the caller's pod's service account the token was obtained for (`NS/NAME`).
    public var serviceAccount: String?
    /// Node mode: the Entra application (client) id the token was obtained for.
    public var clientId: String?

    // status
    /// Broker status (`status` op).
    public var status: BrokerStatus?

    // failure
    /// What went wrong (`ok == false`).
    public var error: WireError?

    /// Creates a response.
    public init(
        id: RequestID?, ok: Bool, token: String? = nil, tokenType: String? = nil, expiresOn: Int64? = nil, expiresIn: Int64? = nil,
        identity: String? = nil, scope: String? = nil, credentials: AWSCredentialsObject? = nil, status: BrokerStatus? = nil, error: WireError? = nil,
        serviceAccount: String? = nil, clientId: String? = nil
    ) {
        self.credentials = credentials
        self.serviceAccount = serviceAccount
        self.clientId = clientId
        self.id = id
        self.ok = ok
        self.token = token
        self.tokenType = tokenType
        self.expiresOn = expiresOn
        self.expiresIn = expiresIn
        self.identity = identity
        self.scope = scope
        self.status = status
        self.error = error
    }

    /// A failure response.
    public static func failure(id: RequestID?, _ error: WireError) -> BrokerResponse {
        BrokerResponse(id: id, ok: false, error: error)
    }
}

/// The `credentials` object of an AWS identity's token response.
public struct AWSCredentialsObject: Codable, Sendable, Equatable {
    public var accessKeyId: String
    public var secretAccessKey: String
    public var sessionToken: String
    /// RFC 3339, UTC (`2026-11-29T05:00:00Z`).
    public var expiration: String
    /// The account of the assumed role, when known.
    public var accountId: String?

    /// Creates credentials.
    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String, expiration: String, accountId: String? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
        self.accountId = accountId
    }
}

/// The `error` object of a failed response.
public struct WireError: Codable, Sendable, Equatable, Error {
    /// A stable code from `WireErrorCode`.
    public var code: String
    /// A specific message for a person; never contains a token or assertion.
    public var message: String
    /// Whether the same request may succeed later.
    public var retryable: Bool
    /// Seconds to wait before retrying, when known.
    public var retryAfter: Int?
    /// What the token service said, for upstream errors.
    public var upstream: UpstreamErrorDetails?

    /// Creates an error.
    public init(code: WireErrorCode, message: String, retryable: Bool = false, retryAfter: Int? = nil, upstream: UpstreamErrorDetails? = nil) {
        self.init(code: code.rawValue, message: message, retryable: retryable, retryAfter: retryAfter, upstream: upstream)
    }

    /// Creates an error with a raw code (for codes relayed from the exchange core).
    public init(code: String, message: String, retryable: Bool, retryAfter: Int? = nil, upstream: UpstreamErrorDetails? = nil) {
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retryAfter = retryAfter
        self.upstream = upstream
    }
}

/// Details of a token-service error.
public struct UpstreamErrorDetails: Codable, Sendable, Equatable {
    /// HTTP status.
    public var status: Int
    /// Entra `error_codes` (AADSTS numbers).
    public var codes: [Int]
    /// OAuth `error`.
    public var error: String?
    /// Entra `trace_id`.
    public var traceId: String?
    /// Entra `correlation_id`.
    public var correlationId: String?

    /// Creates details.
    public init(status: Int, codes: [Int], error: String? = nil, traceId: String? = nil, correlationId: String? = nil) {
        self.status = status
        self.codes = codes
        self.error = error
        self.traceId = traceId
        self.correlationId = correlationId
    }
}

/// The stable error codes of protocol v1.
public enum WireErrorCode: String, Codable, Sendable, CaseIterable {
    case badRequest = "bad_request"
    case tooLarge = "too_large"
    case unknownOp = "unknown_op"
    case unknownIdentity = "unknown_identity"
    case identityRequired = "identity_required"
    case forbidden = "forbidden"
    case notFound = "not_found"
    case assertionUnavailable = "assertion_unavailable"
    case assertionExpired = "assertion_expired"
    case upstreamRejected = "upstream_rejected"
    case upstreamUnavailable = "upstream_unavailable"
    case throttled = "throttled"
    case shuttingDown = "shutting_down"
    case `internal` = "internal"
}
