import Foundation

/// Runs blocking work on its own thread, so that a test never blocks the cooperative pool
/// (2 threads on a 2-core machine) that every test, and the code under test, shares.
public func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
