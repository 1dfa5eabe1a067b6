/// Text that came from outside the broker — a token service's error body or headers, a
/// plugin's stderr or message — made safe to show a caller or write into a log line.
///
/// The one door for such text (docs/security.md, "Upstream text"): parsers hand every string they pass on
/// through `sanitize` or `identifier` and never format it themselves. Token services echo
/// what they were sent (AWS quotes a parameter that failed a constraint, some STSs quote the
/// subject token, a debugging proxy the `Authorization` header), so the result has:
///
/// - every secret the caller names (the assertion, a client secret, its encodings) replaced
///   by `[redacted]`, and so are runs shaped like a JWT (containing `eyJ`, 16 characters or
///   more), long base64-like runs (40 or more of `[A-Za-z0-9+/_.-]` with upper case, lower
///   case and digits), and the credential after `Basic` or `Bearer` (any case);
/// - terminal escapes dropped and every other control or format character (CR, LF, NUL, C1,
///   U+2028/2029, bidi overrides) turned into a space, so one string is one log line;
/// - runs of white space collapsed, and at most `limit` characters kept.
///
/// Paths and host names are lower case in most runs and survive; a long mixed-case
/// identifier inside a message may not, which is the price of never echoing a credential.
/// One pass over the text after the secrets are replaced; no regular expressions.
public enum UntrustedText {
    /// Which end of over-long text to keep.
    public enum Keep: Sendable {
        /// The beginning (an error description, a message).
        case start
        /// The end (a stderr tail, where the final error usually is).
        case end
    }

    /// What replaces a secret.
    public static let redacted = "[redacted]"

    /// Secrets shorter than this are not searched for: replacing every "ab" would garble
    /// the text and protect nothing.
    static let shortestSecret = 8

    /// One line of at most `limit` characters (plus `…` where cut), with `secrets` and
    /// anything credential-like replaced by `[redacted]` and control characters removed.
    public static func sanitize(_ text: String, redacting secrets: [String] = [], limit: Int = 300, keep: Keep = .start) -> String {
        // Keeping the start, nothing far past the limit matters: only the first four limits
        // (plus the longest secret, so that one starting there is seen whole) are read, and
        // text is kept only from before the point where a secret could start and not fit, so
        // no part of a secret is ever kept. A 200 KB field costs what 1.2 KB does. Keeping the
        // end needs all of it (stderr tails are small).
        let longest = secrets.map(\.unicodeScalars.count).max() ?? 0
        let head = Array(text.unicodeScalars.prefix(keep == .start ? limit * 4 + longest : Int.max))
        let complete = keep == .end || head.count < limit * 4 + longest
        let scalars = replacing(secrets, in: head, keepingBefore: complete ? head.count : limit * 4)
        var reader = Line(limit: keep == .start ? limit + 1 : .max, redactLongRuns: true)
        let line = reader.reading(scalars)
        return cut(line, limit: limit, keep: keep)
    }

    /// `sanitize` for UTF-8 bytes (invalid sequences become U+FFFD), keeping the end by
    /// default: bytes are a stderr tail, whose last line says what went wrong.
    public static func sanitize(_ bytes: [UInt8], redacting secrets: [String] = [], limit: Int = 300, keep: Keep = .end) -> String {
        sanitize(String(decoding: bytes, as: UTF8.self), redacting: secrets, limit: limit, keep: keep)
    }

    /// An identifier (a trace, correlation or request id, an error code): the sanitized text
    /// if it is 1…`limit` characters of `[A-Za-z0-9._:-]`, else nil — an id that holds a
    /// secret, a line break, a space or 200 KB is dropped, not cut.
    ///
    /// Long mixed-case runs are allowed here (AWS request ids look like base64); JWT-like
    /// runs and `secrets` are not.
    public static func identifier(_ text: String?, redacting secrets: [String] = [], limit: Int = 128) -> String? {
        // An id is short: one this long is dropped without reading it all.
        guard let text, !text.isEmpty, text.utf8.count <= 64 * 1024 else { return nil }
        let scalars = replacing(secrets, in: Array(text.unicodeScalars))
        var reader = Line(limit: limit + 1, redactLongRuns: false)
        let line = reader.reading(scalars)
        guard !line.isEmpty, line.count <= limit, line.allSatisfy(isIdentifierScalar) else { return nil }
        var result = String.UnicodeScalarView()
        result.append(contentsOf: line)
        return String(result)
    }

    // MARK: Passes

    /// Every occurrence of a secret (longest first, so one containing another goes whole)
    /// replaced by `[redacted]`.
    /// Only what starts before `end` (default: all) is kept; a secret starting there is
    /// still matched against everything after.
    static func replacing(_ secrets: [String], in scalars: [Unicode.Scalar], keepingBefore end: Int? = nil) -> [Unicode.Scalar] {
        let end = min(end ?? scalars.count, scalars.count)
        let needles = secrets.map { Array($0.unicodeScalars) }.filter { $0.count >= shortestSecret }.sorted { $0.count > $1.count }
        guard !needles.isEmpty else { return Array(scalars[..<end]) }
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(end)
        var index = 0
        while index < end {
            let here = scalars[index]
            if let needle = needles.first(where: {
                $0[0] == here && index + $0.count <= scalars.count && scalars[index..<(index + $0.count)].elementsEqual($0)
            }) {
                out.append(contentsOf: redactedScalars)
                index += needle.count
            } else {
                out.append(here)
                index += 1
            }
        }
        return out
    }

    private static func cut(_ line: [Unicode.Scalar], limit: Int, keep: Keep) -> String {
        var result = String.UnicodeScalarView()
        if line.count <= limit {
            result.append(contentsOf: line)
        } else if keep == .start {
            var kept = line.prefix(limit)
            // At a word boundary when there is one in the last third, so a reader never
            // sees half a word ("…presented assertion. h…").
            if line[limit] != " ", let space = kept.lastIndex(of: " "), space >= limit * 2 / 3 { kept = kept[..<space] }
            while let last = kept.last, last == " " || last == "," || last == ";" || last == ":" { kept.removeLast() }
            result.append(contentsOf: kept)
            result.append("…")
        } else {
            var kept = line.suffix(limit)
            if line[line.count - limit - 1] != " ", let space = kept.firstIndex(of: " "), space - kept.startIndex <= limit / 3 {
                kept = kept[(space + 1)...]
            }
            result.append("…")
            result.append(contentsOf: kept.drop { $0 == " " })
        }
        return String(result)
    }

    static let redactedScalars = Array(redacted.unicodeScalars)

    static func isIdentifierScalar(_ s: Unicode.Scalar) -> Bool {
        isAlphanumeric(s) || s == "." || s == "_" || s == ":" || s == "-"
    }

    static func isAlphanumeric(_ s: Unicode.Scalar) -> Bool {
        (s >= "a" && s <= "z") || (s >= "A" && s <= "Z") || (s >= "0" && s <= "9")
    }
}
