import Foundation
import OffPool
import Testing

/// Stopping while a token service hangs, and slow exchanges on idle connections.
@Suite("Shutdown and slow exchanges", .serialized)
struct ShutdownTests {
    @Test("SIGTERM with the token service hung: the waiting caller hears shutting_down and the daemon exits within seconds")
    func sigtermAbandonsHungExchanges() async throws {
        try await Scenario.run { scenario in
            try await scenario.provider.setLatency(milliseconds: 60_000)  // beyond upstream.timeoutSeconds (15) and its retries
            let socketPath = scenario.broker.socketPath
            let waiting = Task {
                try await offPool { () -> Reply in
                    let connection = try UnixSocketConnection(path: socketPath, timeoutSeconds: 30)
                    try connection.send(#"{"op":"token","scope":"api://hung/.default","id":1}"# + "\n")
                    return try connection.readJSONLine()
                }
            }
            try await Task.sleep(for: .seconds(1))  // the exchange is under way, waiting on the provider

            let signalled = ContinuousClock.now
            scenario.broker.process.signal(SIGTERM)
            let reply = try await waiting.value
            #expect(reply.errorCode == "shutting_down", "the caller is told, not left waiting: \(reply)")
            try await waitUntil(timeout: .seconds(20), "the daemon to exit") { !scenario.broker.process.isRunning }
            let took = signalled.duration(to: .now)
            // Before: the drain waited for the hung exchange (up to ~46 s). The figure is
            // about 2 s on an idle machine; the bound leaves room for a loaded one.
            #expect(took < .seconds(6), "exit took \(took): \(scenario.broker.process.stderr.suffix(2500))")
            print("SIGTERM to exit with the token service hung: \(took)")
            try await scenario.provider.setLatency(milliseconds: 0)
        }
    }

    @Test("the idle timeout does not cut a connection whose request waits for a slow exchange")
    func idleTimeoutSparesRequestsInFlight() async throws {
        try await Scenario.run(extraYAML: "limits: { idleTimeoutSeconds: 1 }") { scenario in
            try await scenario.provider.setLatency(milliseconds: 2500)
            let socketPath = scenario.broker.socketPath
            let reply = try? await offPool { () -> Reply in
                let connection = try UnixSocketConnection(path: socketPath, timeoutSeconds: 10)
                try connection.send(#"{"op":"token","scope":"api://slow/.default","id":1}"# + "\n")
                return try connection.readJSONLine()
            }
            #expect(
                reply?.ok == true,
                "answered after 2.5 s on a connection with a 1 s idle timeout: \(reply) \(scenario.broker.process.stderr.suffix(3000))")
            try await scenario.provider.setLatency(milliseconds: 0)
        }
    }
}
