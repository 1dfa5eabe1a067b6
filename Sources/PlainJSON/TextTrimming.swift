extension StringProtocol {
    /// Without leading and trailing whitespace and line ends: Foundation's
    /// `trimmingCharacters(in: .whitespacesAndNewlines)` from the standard library alone, for
    /// the modules on FoundationEssentials (which has no `CharacterSet`) and the CLI (which has
    /// no Foundation at all).
    public func trimmed() -> String { trimmed(where: \.isWhitespace) }

    /// Without the leading and trailing characters `remove` matches.
    public func trimmed(where remove: (Character) -> Bool) -> String {
        guard let first = firstIndex(where: { !remove($0) }), let last = lastIndex(where: { !remove($0) }) else { return "" }
        return String(self[first...last])
    }
}
