/// Path text split as `NSString`'s `deletingLastPathComponent` and `lastPathComponent` split
/// it, for the files on FoundationEssentials (which has no `NSString`).
enum PathText {
    /// `/a/b` → `/a`, `/b` → `/`, `b` → empty; trailing slashes ignored.
    static func directory(_ path: String) -> String {
        let trimmed = trimmingTrailingSlashes(path)
        guard let slash = trimmed.lastIndex(of: "/") else { return "" }
        let parent = trimmingTrailingSlashes(String(trimmed[..<slash]))
        return parent.isEmpty && path.hasPrefix("/") ? "/" : parent
    }

    /// `/a/b` → `b`, `b` → `b`, `/` → `/`; trailing slashes ignored.
    static func lastComponent(_ path: String) -> String {
        let trimmed = trimmingTrailingSlashes(path)
        guard !trimmed.isEmpty else { return path.isEmpty ? "" : "/" }
        return trimmed.lastIndex(of: "/").map { String(trimmed[trimmed.index(after: $0)...]) } ?? trimmed
    }

    private static func trimmingTrailingSlashes(_ path: String) -> String {
        var text = Substring(path)
        while text.count > 1, text.last == "/" { text = text.dropLast() }
        return text == "/" ? "" : String(text)
    }
}
