/// Why an `AsyncHTTPTransport` could not be created, with a stable `code`.
///
/// Only construction fails with this type; sending fails with `TokenExchangeError`
/// (the `HTTPTransport` contract).
public struct UpstreamHTTPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable machine-readable codes.
    public enum Code: String, Sendable, CaseIterable {
        /// A CA file could not be read (missing, permission denied, a directory).
        case caFileUnreadable = "ca_file_unreadable"
        /// A CA file was read but holds no usable PEM certificate.
        case caFileInvalid = "ca_file_invalid"
        /// A configuration value is out of range.
        case invalidConfiguration = "invalid_configuration"
    }

    /// The stable code.
    public var code: Code
    /// An operator-facing message naming the file or field.
    public var message: String

    /// Creates an error.
    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    /// `code: message`, for logs.
    /// `code: message`, for logs.
    public var description: String { "\(code.rawValue): \(message)" }
}
