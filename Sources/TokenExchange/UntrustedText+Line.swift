extension UntrustedText {
    /// The single pass behind `sanitize`: splits text into runs of token characters and the
    /// rest, redacts the runs that look like credentials, turns controls into spaces and
    /// collapses white space; stops once `limit` scalars are out.
    struct Line {
        let limit: Int
        /// Whether long mixed-case runs count as secrets (not for identifiers).
        let redactLongRuns: Bool

        private var out: [Unicode.Scalar] = []
        private var run: [Unicode.Scalar] = []
        private var pendingSpace = false
        /// The last run was `Basic` or `Bearer`: the next one is its credential.
        private var credentialNext = false

        init(limit: Int, redactLongRuns: Bool) {
            self.limit = limit
            self.redactLongRuns = redactLongRuns
        }

        /// The cleaned scalars of `scalars`, at most about `limit` of them.
        mutating func reading(_ scalars: [Unicode.Scalar]) -> [Unicode.Scalar] {
            var index = 0
            while index < scalars.count, out.count < limit {
                let scalar = scalars[index]
                index += 1
                if scalar == "\u{1B}" {
                    index = Self.skipEscape(scalars, from: index)
                    space()
                } else if UntrustedText.isRunScalar(scalar) || (scalar == "=" && isPadding(scalars, at: index - 1)) {
                    run.append(scalar)
                } else if Self.isSpaceLike(scalar) {
                    space()
                } else {
                    flushRun()
                    emitPendingSpace()
                    out.append(scalar)
                    credentialNext = false
                }
            }
            flushRun()
            return out
        }

        /// `=` is part of a run only as base64 padding at its end, so `key=value` keeps its key.
        private func isPadding(_ scalars: [Unicode.Scalar], at index: Int) -> Bool {
            guard !run.isEmpty else { return false }
            let next = index + 1
            return next == scalars.count || scalars[next] == "=" || !UntrustedText.isRunScalar(scalars[next])
        }

        private mutating func space() {
            flushRun()
            pendingSpace = !out.isEmpty
        }

        private mutating func emitPendingSpace() {
            if pendingSpace { out.append(" ") }
            pendingSpace = false
        }

        private mutating func flushRun() {
            guard !run.isEmpty else { return }
            emitPendingSpace()
            if credentialNext || UntrustedText.looksSecret(run, longRuns: redactLongRuns) {
                out.append(contentsOf: UntrustedText.redactedScalars)
                credentialNext = false
            } else {
                out.append(contentsOf: run)
                credentialNext = UntrustedText.isCredentialScheme(run)
            }
            run.removeAll(keepingCapacity: true)
        }

        /// Past a CSI sequence (ESC [ parameters… final byte in @–~) or, for other
        /// escapes, the one scalar after ESC.
        private static func skipEscape(_ scalars: [Unicode.Scalar], from start: Int) -> Int {
            guard start < scalars.count else { return start }
            guard scalars[start] == "[" else { return start + 1 }
            var index = start + 1
            while index < scalars.count {
                let value = scalars[index].value
                index += 1
                if (0x40...0x7E).contains(value) { break }
            }
            return index
        }

        /// White space, and every control or format character (which becomes a space).
        private static func isSpaceLike(_ s: Unicode.Scalar) -> Bool {
            if s.value >= 0x21 && s.value < 0x7F { return false }
            if s.value < 0x21 || s.value == 0x7F { return true }
            if s.properties.isWhitespace { return true }
            switch s.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator: return true
            default: return false
            }
        }
    }

    /// Characters of base64, base64url, JWTs and paths.
    static func isRunScalar(_ s: Unicode.Scalar) -> Bool {
        isAlphanumeric(s) || s == "+" || s == "/" || s == "_" || s == "." || s == "-"
    }

    /// A JWT (its header is base64url of `{"…`, which begins `eyJ`), or a long run mixing
    /// upper case, lower case and digits.
    static func looksSecret(_ run: [Unicode.Scalar], longRuns: Bool) -> Bool {
        if run.count >= 16, run.indices.dropLast(2).contains(where: { run[$0] == "e" && run[$0 + 1] == "y" && run[$0 + 2] == "J" }) {
            return true
        }
        guard longRuns, run.count >= 40 else { return false }
        return run.contains { $0 >= "A" && $0 <= "Z" } && run.contains { $0 >= "a" && $0 <= "z" } && run.contains { $0 >= "0" && $0 <= "9" }
    }

    /// `Basic` or `Bearer`, in any case: the HTTP schemes whose next word is the credential.
    static func isCredentialScheme(_ run: [Unicode.Scalar]) -> Bool {
        guard run.count == 5 || run.count == 6 else { return false }
        let lower = String(String.UnicodeScalarView(run)).lowercased()
        return lower == "basic" || lower == "bearer"
    }
}
