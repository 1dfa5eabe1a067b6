import Foundation
import Logging
import TokenExchange
import UpstreamHTTP

/// One HTTPS GET for the network checks (clock skew, issuer discovery and keys).
protocol DoctorHTTP {
    /// Fetches `url`; any HTTP status is an answer, only a failure to get one is `unreachable`.
    func get(_ url: String) -> DoctorHTTPResult
}

/// What a GET produced, with the local times around it (for the clock-skew estimate).
enum DoctorHTTPResult {
    case answered(status: Int, date: String?, body: [UInt8], sentAt: Date, receivedAt: Date)
    case unreachable(String)
}

/// `DoctorHTTP` on the broker's own transport (`AsyncHTTPTransport`), so the doctor
/// trusts what the broker trusts: the system roots plus `SSL_CERT_FILE` and `--ca-file`,
/// and explains a TLS or connect failure the way the broker's log does. No retries:
/// the doctor reports the first failure.
final class UpstreamDoctorHTTP: DoctorHTTP {
    private let transport: AsyncHTTPTransport

    init(environment: [String: String], caFile: String?, timeoutSeconds: Int) throws {
        let base = UpstreamHTTPConfiguration(
            connectTimeout: .seconds(min(timeoutSeconds, 5)), requestTimeout: .seconds(timeoutSeconds), retries: 0,
            userAgent: "tokenbroker-doctor/0.1")
        transport = try AsyncHTTPTransport(
            configuration: .configuration(environment: environment, caFile: caFile, base: base),
            logger: Logger(label: "tokenbroker.doctor", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    func get(_ url: String) -> DoctorHTTPResult {
        let transport = self.transport
        let sentAt = Date()
        let outcome = Blocking<Result<UpstreamResponse, TokenExchangeError>>()
        Task.detached {
            do throws(TokenExchangeError) {
                outcome.set(
                    .success(
                        try await transport.send(
                            UpstreamRequest(method: "GET", url: url, headers: [HeaderField("Accept", "application/json")], body: []))))
            } catch {
                outcome.set(.failure(error))
            }
        }
        switch outcome.wait() {
        case .success(let response):
            return .answered(status: response.status, date: response.header("Date"), body: response.body, sentAt: sentAt, receivedAt: Date())
        case .failure(let error):
            return .unreachable(error.message)
        }
    }

    func shutdown() {
        let transport = self.transport
        let done = Blocking<Bool>()
        Task.detached {
            try? await transport.shutdown()
            done.set(true)
        }
        _ = done.wait()
    }
}

/// A value produced by a task and awaited by a plain thread (the CLI's commands are synchronous).
private final class Blocking<Value: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: Value?

    func set(_ newValue: Value) {
        condition.lock()
        value = newValue
        condition.signal()
        condition.unlock()
    }

    func wait() -> Value {
        condition.lock()
        defer { condition.unlock() }
        while value == nil { condition.wait() }
        return value!
    }
}
