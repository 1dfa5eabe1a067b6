public import Foundation

/// Returns once `process` has exited, sleeping between looks. Not `waitUntilExit()`: it spins
/// a run loop on the calling thread — a cooperative one in a test — until Foundation notices
/// the exit on a dispatch queue, and two such waits on a 2-core machine left no thread to
/// notice it (a CI run hung for 10 minutes with zombie children). Sleeping gives the thread back.
public func exited(_ process: Process) async {
    while process.isRunning { try? await Task.sleep(for: .milliseconds(10)) }
}

/// Runs `body`, then kills `process` (SIGKILL) and returns once it is gone, whether `body`
/// threw or not: a `defer` cannot await the exit.
public func killing<T>(_ process: Process, after body: () async throws -> T) async throws -> T {
    let outcome: Result<T, any Error>
    do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
    kill(process.processIdentifier, SIGKILL)
    await exited(process)
    return try outcome.get()
}
