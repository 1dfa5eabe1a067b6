/// An OAuth scope such as `https://storage.azure.com/.default`; the unit the cache is keyed by.
public struct Scope: Hashable, Sendable, CustomStringConvertible {
    /// The scope string exactly as sent upstream.
    public let value: String

    /// Wraps a scope string as given by a caller.
    public init(_ value: String) {
        self.value = value
    }

    /// Maps an IMDS-style `resource` to the scope the SDKs use for it:
    /// `https://storage.azure.com` and `https://storage.azure.com/` both become
    /// `https://storage.azure.com/.default`, so both share one cached token. A resource
    /// that already is a `.default` scope (some clients send one) stays as it is.
    public init(resource: String) {
        var trimmed = Substring(resource)
        while trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        self.value = trimmed.hasSuffix("/.default") ? String(trimmed) : trimmed + "/.default"
    }

    /// The resource part of a `…/.default` scope (what Entra puts into `aud`), or the scope itself.
    public var resource: String {
        value.hasSuffix("/.default") ? String(value.dropLast("/.default".count)) : value
    }

    public var description: String { value }
}
