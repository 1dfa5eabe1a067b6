/// Makes text a plugin printed safe to put into an error message: one line, no control
/// characters or terminal escapes, no secrets, bounded length.
///
/// Plugins must not print secrets to stderr, but one that dumps a failed HTTP exchange
/// might. Anything that looks like a JWT (`eyJ…`) or a long base64 run (mixed case and
/// digits, 40 characters or more) is replaced by `[redacted]`. Paths and hostnames have no
/// upper-case letters in most runs and survive; a long mixed-case identifier may not,
/// which is the price of never echoing a credential.
enum OutputSanitizer {
    /// Which end of over-long text to keep.
    enum Keep {
        /// The beginning (a message a plugin chose to send).
        case start
        /// The end (a stderr tail, where the final error usually is).
        case end
    }

    static let redacted = "[redacted]"

    /// Decodes `bytes` as UTF-8 (invalid sequences become U+FFFD) and cleans the text.
    static func clean(_ bytes: [UInt8], limit: Int = 512, keep: Keep = .end) -> String {
        clean(String(decoding: bytes, as: UTF8.self), limit: limit, keep: keep)
    }

    /// One line of at most `limit` characters, with control characters, escapes and
    /// anything token-like removed.
    static func clean(_ text: String, limit: Int = 512, keep: Keep = .start) -> String {
        let line = redactSecrets(in: collapseWhitespace(stripControls(text)))
        guard line.count > limit else { return line }
        switch keep {
        case .start: return String(line.prefix(limit)) + "…"
        case .end: return "…" + String(line.suffix(limit))
        }
    }

    /// Drops ANSI escape sequences and turns every other control or format character
    /// (newlines, tabs, NUL, bidi overrides, …) into a space.
    private static func stripControls(_ text: String) -> String {
        var output = String.UnicodeScalarView()
        var scalars = text.unicodeScalars.makeIterator()
        while let scalar = scalars.next() {
            if scalar == "\u{1B}" {
                // CSI: ESC [ parameters… final byte in @–~. Other escapes: drop the next scalar.
                guard let next = scalars.next() else { break }
                if next == "[" {
                    while let byte = scalars.next(), !(0x40...0x7E).contains(byte.value) {}
                }
                continue
            }
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator:
                output.append(" ")
            default:
                output.append(scalar)
            }
        }
        return String(output)
    }

    private static func collapseWhitespace(_ text: String) -> String {
        text.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }

    /// Replaces JWT-like and long base64-like runs.
    static func redactSecrets(in text: String) -> String {
        var output = ""
        var run = ""
        func flush() {
            output += looksSecret(run) ? redacted : run
            run = ""
        }
        let characters = Array(text)
        for (index, character) in characters.enumerated() {
            // '=' belongs to a run only as base64 padding (at its end), so `key=value` keeps its key.
            let isPadding = character == "=" && !run.isEmpty
                && (index + 1 == characters.count || characters[index + 1] == "=" || !isTokenCharacter(characters[index + 1]))
            if isPadding || (character != "=" && isTokenCharacter(character)) {
                run.append(character)
            } else {
                flush()
                output.append(character)
            }
        }
        flush()
        return output
    }

    private static func isTokenCharacter(_ character: Character) -> Bool {
        guard character.isASCII else { return false }
        return character.isLetter || character.isNumber || "+/=_.-".contains(character)
    }

    private static func looksSecret(_ run: String) -> Bool {
        // A JWT's header is base64url of `{"…`, which always begins `eyJ`.
        if run.count >= 16, run.contains("eyJ") { return true }
        guard run.count >= 40 else { return false }
        return run.contains(where: \.isUppercase) && run.contains(where: \.isLowercase) && run.contains(where: \.isNumber)
    }
}
