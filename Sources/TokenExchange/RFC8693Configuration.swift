/// Where and how to trade an assertion at an OAuth 2.0 Token Exchange (RFC 8693) service.
///
/// Its `description` never shows the client secret.
public struct RFC8693Configuration: Sendable, Equatable, CustomStringConvertible {
    /// The token endpoint, `https://…` (plain `http://` only to a loopback address). Required.
    public var tokenEndpoint: String
    /// `audience`: the logical name of the service the token is for. Default none (not sent).
    public var audience: String?
    /// `resource`: the absolute URI of the service the token is for. Default none (not sent).
    public var resource: String?
    /// `subject_token_type`. Default `urn:ietf:params:oauth:token-type:jwt`.
    public var subjectTokenType: String
    /// `requested_token_type`, e.g. `urn:ietf:params:oauth:token-type:access_token`. Default none
    /// (not sent: the service picks).
    public var requestedTokenType: String?
    /// Client id for HTTP Basic client authentication (RFC 6749 §2.3.1). Default none.
    public var clientId: String?
    /// Client secret, set together with `clientId`. Default none. Never logged.
    public var clientSecret: String?

    /// `urn:ietf:params:oauth:token-type:jwt`, the default subject token type.
    public static let jwtTokenType = "urn:ietf:params:oauth:token-type:jwt"
    /// `urn:ietf:params:oauth:token-type:id_token`.
    public static let idTokenType = "urn:ietf:params:oauth:token-type:id_token"
    /// `urn:ietf:params:oauth:token-type:access_token`.
    public static let accessTokenType = "urn:ietf:params:oauth:token-type:access_token"

    /// Creates a configuration, checking every field once.
    ///
    /// Throws a `RFC8693ConfigurationError` naming the first bad field: a non-https endpoint,
    /// an empty or relative `resource`, a token type that is not a URI, or a client id
    /// without a secret (or the reverse).
    public init(
        tokenEndpoint: String,
        audience: String? = nil,
        resource: String? = nil,
        subjectTokenType: String = Self.jwtTokenType,
        requestedTokenType: String? = nil,
        clientId: String? = nil,
        clientSecret: String? = nil
    ) throws(RFC8693ConfigurationError) {
        switch EndpointURL.validate(tokenEndpoint) {
        case .success(let url): self.tokenEndpoint = url
        case .failure(let failure):
            throw RFC8693ConfigurationError("tokenEndpoint \(failure.reason), got '\(EndpointURL.redacted(tokenEndpoint))'")
        }
        if let audience {
            guard !audience.trimmingWhitespace().isEmpty, !Self.hasControlCharacters(audience) else {
                throw RFC8693ConfigurationError("audience must be a non-empty name without control characters; leave it out to send none")
            }
        }
        if let resource {
            guard Self.isAbsoluteURI(resource) else {
                throw RFC8693ConfigurationError(
                    "resource must be an absolute URI without a #fragment (RFC 8693 §2.1), got '\(Self.printable(resource))'")
            }
        }
        guard Self.isTokenTypeURI(subjectTokenType) else {
            throw RFC8693ConfigurationError(
                "subjectTokenType must be a token type URI such as \(Self.jwtTokenType), got '\(Self.printable(subjectTokenType))'")
        }
        if let requestedTokenType {
            guard Self.isTokenTypeURI(requestedTokenType) else {
                throw RFC8693ConfigurationError(
                    "requestedTokenType must be a token type URI such as \(Self.accessTokenType), got '\(Self.printable(requestedTokenType))'")
            }
        }
        switch (clientId, clientSecret) {
        case (nil, nil):
            break
        case (let id?, let secret?):
            guard !id.isEmpty, !Self.hasControlCharacters(id) else {
                throw RFC8693ConfigurationError("clientId must be non-empty and without control characters")
            }
            guard !secret.isEmpty else {
                throw RFC8693ConfigurationError("clientSecret (clientSecretFile) must not be empty")
            }
        case (_?, nil):
            throw RFC8693ConfigurationError("clientId needs clientSecret (clientSecretFile): only HTTP Basic client authentication is supported")
        case (nil, _?):
            throw RFC8693ConfigurationError("clientSecret (clientSecretFile) needs clientId")
        }
        self.audience = audience
        self.resource = resource
        self.subjectTokenType = subjectTokenType
        self.requestedTokenType = requestedTokenType
        self.clientId = clientId
        self.clientSecret = clientSecret
    }

    public var description: String {
        "RFC8693Configuration(tokenEndpoint: \(tokenEndpoint), audience: \(audience ?? "-"), resource: \(resource ?? "-"), "
            + "subjectTokenType: \(subjectTokenType), requestedTokenType: \(requestedTokenType ?? "-"), "
            + "clientId: \(clientId ?? "-"), clientSecret: \(clientSecret == nil ? "-" : "<redacted>"))"
    }

    /// `scheme:rest` with an RFC 3986 scheme, no whitespace, no fragment.
    static func isAbsoluteURI(_ text: String) -> Bool {
        guard let colon = text.firstIndex(of: ":"), colon != text.startIndex, text.index(after: colon) != text.endIndex else {
            return false
        }
        let scheme = text[..<colon]
        guard let first = scheme.first, first.isASCII, first.isLetter,
            scheme.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == ".") })
        else { return false }
        return !text.contains("#") && !text.contains(where: { $0.isWhitespace }) && !hasControlCharacters(text)
    }

    /// A token type identifier is a URI (RFC 8693 §3); `urn:ietf:params:oauth:token-type:*` in practice.
    static func isTokenTypeURI(_ text: String) -> Bool {
        isAbsoluteURI(text) && text.count <= 512
    }

    static func hasControlCharacters(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
    }

    /// At most 200 characters of `text`, without query or control characters, for messages.
    static func printable(_ text: String) -> String {
        String(text.prefix { $0 != "?" }.prefix(200).map { hasControlCharacters(String($0)) ? " " : $0 })
    }
}

/// An invalid RFC 8693 setting; the message starts with the field name.
public struct RFC8693ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong.
    public let message: String
    /// Creates an error.
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
