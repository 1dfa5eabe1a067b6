/// Why the development identity provider could not start or keep running.
public struct DevIdentityProviderError: Error, CustomStringConvertible, Sendable {
    /// A stable, label-safe reason.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The wire and metrics spelling, e.g. `invalid_configuration`.
        public var rawValue: String
        /// Wraps a raw code.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// A configuration field is out of range; the message names it.
        public static let invalidConfiguration = Code(rawValue: "invalid_configuration")
        /// The provider was shut down (possibly while starting); it cannot be restarted.
        public static let stopped = Code(rawValue: "stopped")
        /// `start()` was called while another `start()` was still running.
        public static let alreadyStarting = Code(rawValue: "already_starting")
        /// The raw value.
        public var description: String { rawValue }
    }

    /// The reason.
    public var code: Code
    /// What went wrong, naming the field or step.
    public var message: String

    /// Creates an error.
    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    /// `code: message`.
    public var description: String { "\(code): \(message)" }
}

extension DevIdentityProviderConfiguration {
    /// Checks every field once, where the provider starts, naming the first bad one.
    func validate() throws(DevIdentityProviderError) {
        func fail(_ message: String) -> DevIdentityProviderError {
            DevIdentityProviderError(code: .invalidConfiguration, message: message)
        }
        guard !stateDirectory.isEmpty else { throw fail("stateDirectory must not be empty") }
        guard (0...65535).contains(issuerPort) else { throw fail("issuerPort must be 0...65535, got \(issuerPort)") }
        guard (0...65535).contains(entraPort) else { throw fail("entraPort must be 0...65535, got \(entraPort)") }
        guard !tenantId.isEmpty, !tenantId.contains("/") else { throw fail("tenantId must be a non-empty path segment") }
        guard !clientId.isEmpty else { throw fail("clientId must not be empty") }
        guard !serviceAccountNamespace.isEmpty, !serviceAccountName.isEmpty else {
            throw fail("serviceAccountNamespace and serviceAccountName must not be empty")
        }
        guard assertionLifetime >= .seconds(1) else { throw fail("assertionLifetime must be at least 1 s") }
        guard effectiveRotationInterval >= .milliseconds(10) else { throw fail("rotationInterval must be at least 10 ms") }
        guard accessTokenLifetime >= .seconds(1) else { throw fail("accessTokenLifetime must be at least 1 s") }
        guard latency >= .zero else { throw fail("latency must not be negative") }
        guard !stsAudience.isEmpty else { throw fail("stsAudience must not be empty") }
        switch (stsClientId, stsClientSecret) {
        case (nil, nil): break
        case (let id?, let secret?) where !id.isEmpty && !secret.isEmpty: break
        default: throw fail("stsClientId and stsClientSecret must be set together, and not empty")
        }
    }
}
