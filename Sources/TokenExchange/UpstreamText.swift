import Foundation

/// Upstream-supplied text (an OAuth `error_description`, an AWS `Message`) made safe for
/// an operator-facing message.
///
/// Token services echo request values in their errors (AWS quotes a parameter that failed a
/// constraint, some STSs quote the subject token). What reaches a message is cut to one line
/// of at most `limit` characters after every secret we sent has been replaced, so no token,
/// assertion or client secret can travel back to a caller through an error.
enum UpstreamText {
    /// The text with `secrets` (and anything shaped like a JWT) replaced by `[redacted]`,
    /// control characters turned into spaces, and at most `limit` characters kept.
    static func sanitize(_ text: String, redacting secrets: [String], limit: Int = 300) -> String {
        var result = text
        // Longest first, so that a secret containing another is replaced whole.
        for secret in secrets.filter({ $0.count >= 8 }).sorted(by: { $0.count > $1.count }) {
            result = result.replacingOccurrences(of: secret, with: "[redacted]")
        }
        result = redactingJWTs(result)
        var out = ""
        out.reserveCapacity(min(result.count, limit))
        var count = 0
        for character in result {
            guard count < limit else { break }
            out.append(character.unicodeScalars.allSatisfy { $0.value < 0x20 || $0.value == 0x7F } ? " " : character)
            count += 1
        }
        if count == limit && result.count > limit { out += "…" }
        return out.trimmingWhitespace()
    }

    /// Replaces runs that look like a compact JWS (`eyJ…` base64url, dot, base64url, dot, …)
    /// or one of its long base64url-encoded JSON parts.
    static func redactingJWTs(_ text: String) -> String {
        let scalars = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var index = 0
        func isB64(_ s: Unicode.Scalar) -> Bool {
            (s >= "A" && s <= "Z") || (s >= "a" && s <= "z") || (s >= "0" && s <= "9") || s == "-" || s == "_"
        }
        while index < scalars.count {
            if index + 3 <= scalars.count, scalars[index] == "e", scalars[index + 1] == "y", scalars[index + 2] == "J",
                index == 0 || !isB64(scalars[index - 1])
            {
                var end = index
                var dots = 0
                while end < scalars.count, isB64(scalars[end]) || scalars[end] == "." {
                    if scalars[end] == "." { dots += 1 }
                    end += 1
                }
                if (dots >= 1 && end - index >= 16) || end - index >= 32 {
                    out.append(contentsOf: "[redacted]".unicodeScalars)
                    index = end
                    continue
                }
            }
            out.append(scalars[index])
            index += 1
        }
        return String(out)
    }
}
