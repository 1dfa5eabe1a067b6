public import TokenExchange

/// An assertion source as the daemon runs it: kept fresh by `run()` (a file watch)
/// or fetched on demand, and reported on through `snapshot()`.
public protocol ManagedAssertionSource: AssertionSource, AnyObject {
    /// Keeps the source fresh until cancelled; sources fetched on demand return at once.
    func run() async throws
    /// What the source holds now — claims and errors, never the token.
    func snapshot() -> AssertionSnapshot
}

extension FileAssertionSource: ManagedAssertionSource {}
