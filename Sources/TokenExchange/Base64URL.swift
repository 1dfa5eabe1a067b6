public import FoundationEssentials
import Glibc

/// base64url (RFC 4648 §5) without padding, as used in JWTs.
public enum Base64URL {
    /// Decodes base64url text, with or without padding; nil when it is not base64url.
    public static func decode(_ text: some StringProtocol) -> Data? {
        var base64 = String(text.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        guard !base64.contains("=") || base64.hasSuffix("=") else { return nil }
        base64 = base64.trimmed { $0 == "=" }
        let remainder = base64.count % 4
        if remainder == 1 { return nil }
        if remainder > 0 { base64 += String(repeating: "=", count: 4 - remainder) }
        return Data(base64Encoded: base64)
    }

    /// Encodes bytes as unpadded base64url.
    public static func encode(_ data: some DataProtocol) -> String {
        String(Data(data).base64EncodedString().compactMap { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 == "=" ? nil : $0 })
    }
}
