import Synchronization
import TokenExchange

/// A transport that records what it is asked to send and answers with one canned response
/// (or fails as a transport would).
final class RecordingTransport: HTTPTransport {
    private let sent = Mutex<[UpstreamRequest]>([])
    private let result: Result<UpstreamResponse, TokenExchangeError>

    init(response: UpstreamResponse) { result = .success(response) }
    init(failure: TokenExchangeError) { result = .failure(failure) }

    var requests: [UpstreamRequest] { sent.withLock { $0 } }

    func send(_ request: UpstreamRequest) async throws(TokenExchangeError) -> UpstreamResponse {
        sent.withLock { $0.append(request) }
        return try result.get()
    }
}

/// Collects the warnings an exchanger reports.
final class WarningSink: Sendable {
    private let warnings = Mutex<[String]>([])
    func append(_ warning: String) { warnings.withLock { $0.append(warning) } }
    var all: [String] { warnings.withLock { $0 } }
}
