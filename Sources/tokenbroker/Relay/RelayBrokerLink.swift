import BrokerClient
import Glibc
import TokenBrokerProtocol

/// The relay's NDJSON connection to the broker socket, one per client connection (so one
/// thread uses it), kept open for that client's next request.
///
/// The broker closes idle connections (60 s) and, when it restarts, answers requests on old
/// connections with `shutting_down`: a reused connection that fails that way is dropped and the
/// request sent again on a new one. While the broker is being replaced (a DaemonSet rollout),
/// the socket refuses connections or is missing for a moment: new connections are retried for
/// up to `patience` (backing off from 50 ms to 1 s), so an SDK sees a slower answer, not an
/// error. A timeout is not retried (it would double the wait).
final class RelayBrokerLink {
    private let socketPath: String
    private let timeoutSeconds: Int
    private var connection: BrokerConnection?

    init(socketPath: String, timeoutSeconds: Int) {
        self.socketPath = socketPath
        self.timeoutSeconds = timeoutSeconds
    }

    /// Sends `request` and returns the broker's response (which may be a failure response).
    func roundTrip(_ request: BrokerRequest, patience: Duration) throws(BrokerConnection.Failure) -> BrokerResponse {
        if let reused = connection {
            connection = nil
            do {
                let response = try reused.roundTrip(request)
                guard Self.isRestarting(response) else {
                    connection = reused
                    return response
                }
            } catch .timedOut {
                throw .timedOut
            } catch {
                // Closed under us (idle timeout, restart): a new connection below.
            }
        }
        let deadline = ContinuousClock.now + patience
        var pause = Duration.milliseconds(50)
        while true {
            do {
                let fresh = try BrokerConnection(path: socketPath, timeoutSeconds: timeoutSeconds)
                let response = try fresh.roundTrip(request)
                if !Self.isRestarting(response) {
                    connection = fresh
                    return response
                }
                guard ContinuousClock.now + pause < deadline else { return response }
            } catch {
                switch error {
                case .timedOut, .protocolError: throw error
                case .unreachable, .closed:
                    // Refused, missing, or closed without an answer (a broker stopping between
                    // accept and answer): the broker is being replaced, or is not there.
                    guard ContinuousClock.now + pause < deadline else { throw error }
                }
            }
            let (seconds, attoseconds) = pause.components
            usleep(useconds_t(seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
            pause = min(pause * 2, .seconds(1))
        }
    }

    private static func isRestarting(_ response: BrokerResponse) -> Bool {
        response.error?.code == WireErrorCode.shuttingDown.rawValue
    }
}
