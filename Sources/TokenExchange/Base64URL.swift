public import FoundationEssentials
import Glibc
import PlainJSON

/// base64url (RFC 4648 §5) without padding, as JWTs and JWKs use it (RFC 7515 §2): the one
/// codec of the broker and of the dev provider.
public enum Base64URL {
    /// Whether `decode` takes trailing `=` padding.
    public enum Padding: Sendable {
        /// Padding or none, as the broker reads assertions (lenient in what it accepts).
        case optional
        /// No `=` at all, as Entra reads a client assertion (the dev provider is strict like it).
        case forbidden
    }

    /// Decodes base64url text; nil when it is not base64url (or is padded where `padding` forbids it).
    public static func decode(_ text: some StringProtocol, padding: Padding = .optional) -> Data? {
        var base64 = String(text.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        guard !base64.contains("=") || (padding == .optional && base64.hasSuffix("=")) else { return nil }
        base64 = base64.trimmed { $0 == "=" }
        let remainder = base64.count % 4
        if remainder == 1 { return nil }
        if remainder > 0 { base64 += String(repeating: "=", count: 4 - remainder) }
        return Data(base64Encoded: base64)
    }

    /// Encodes bytes as unpadded base64url.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        String(Data(bytes).base64EncodedString().compactMap { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 == "=" ? nil : $0 })
    }
}
