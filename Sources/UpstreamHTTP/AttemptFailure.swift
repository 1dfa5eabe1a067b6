import AsyncHTTPClient
import FoundationEssentials
import Glibc
import NIOCore
import NIOSSL
import TokenExchange

/// One failed attempt: the error to report and whether another attempt may help.
struct AttemptFailure: Error {
    /// `upstream_unavailable` with a specific message; never holds a request body.
    let error: TokenExchangeError
    /// True for failures that are often transient (refused, reset, connect timeout).
    let isRetryable: Bool

    private init(_ message: String, retryable: Bool) {
        self.error = .transport(message)
        self.isRetryable = retryable
    }

    /// The body exceeded `maxResponseBytes`; the same answer would come again.
    static func oversized(limit: Int, target: UpstreamTarget) -> Self {
        Self("response larger than \(ByteCount(limit)) from \(target.hostAndPort)", retryable: false)
    }

    /// Turns whatever AsyncHTTPClient, NIO or NIOSSL threw into a specific message.
    ///
    /// Not retried: TLS verification failures (deterministic), request timeouts (the budget
    /// is spent) and cancellation. Everything else is treated as a network blip.
    static func classify(_ error: any Error, target: UpstreamTarget, configuration: UpstreamHTTPConfiguration) -> Self {
        let where_ = target.hostAndPort
        switch error {
        case let error as HTTPClientError:
            switch error {
            case .connectTimeout:
                return Self("connect timeout after \(seconds(configuration.connectTimeout)) to \(where_)", retryable: true)
            case .deadlineExceeded, .readTimeout, .writeTimeout:
                return Self("timeout after \(seconds(configuration.requestTimeout)) waiting for \(where_)", retryable: false)
            case .tlsHandshakeTimeout:
                return Self("TLS handshake timeout with \(where_)", retryable: true)
            case .remoteConnectionClosed:
                return Self("connection closed by \(where_) before a complete response", retryable: true)
            case .cancelled:
                return Self("request to \(where_) cancelled", retryable: false)
            default:
                return Self("HTTP client error talking to \(where_): \(error.shortDescription)", retryable: true)
            }
        case is CancellationError:
            return Self("request to \(where_) cancelled", retryable: false)
        case let error as NIOSSLError:
            return tls(error, target: where_, configuration: configuration)
        case let error as NIOSSLExtraError:
            // Hostname mismatch: the certificate is for another name.
            return Self("TLS certificate verify failed for \(where_): \(error)", retryable: false)
        case let error as IOError:
            return io(errno: error.errnoCode, description: "\(error)", target: where_)
        default:
            break
        }
        // NIO's connect error (NIOPosix.NIOConnectionError) wraps an IOError per address tried.
        // This module does not link NIOPosix, so reach the wrapped errors by reflection.
        let text = "\(error)"
        if let nested = nestedIOError(in: error) {
            return io(errno: nested.errnoCode, description: "\(nested)", target: where_)
        }
        if text.hasPrefix("DNS error") {
            return Self("cannot resolve \(where_) (\(text))", retryable: true)
        }
        return Self("\(type(of: error)) talking to \(where_): \(text)", retryable: true)
    }

    private static func tls(_ error: NIOSSLError, target: String, configuration: UpstreamHTTPConfiguration) -> Self {
        guard case .handshakeFailed(let reason) = error else {
            return Self("TLS error with \(target): \(error)", retryable: true)
        }
        let detail = "\(reason)"
        if detail.contains("CERTIFICATE_VERIFY_FAILED") {
            return Self(
                "TLS certificate verify failed for \(target): the server's certificate does not chain to a trusted CA "
                    + (configuration.trustSystemRoots
                        ? "(system roots plus configured CA files / SSL_CERT_FILE)"
                        : "(trusted: \(configuration.additionalCAFiles.joined(separator: ", ")) only)"),
                retryable: false
            )
        }
        return Self("TLS handshake with \(target) failed: \(detail)", retryable: false)
    }

    private static func io(errno code: Int32, description: String, target: String) -> Self {
        switch code {
        case ECONNREFUSED: return Self("connect refused to \(target)", retryable: true)
        case ECONNRESET: return Self("connection reset by \(target)", retryable: true)
        case ENETUNREACH, EHOSTUNREACH: return Self("no route to \(target)", retryable: true)
        case ETIMEDOUT: return Self("connect timed out to \(target)", retryable: true)
        default: return Self("I/O error talking to \(target): \(description)", retryable: true)
        }
    }

    private static func nestedIOError(in error: any Error, depth: Int = 0) -> IOError? {
        guard depth < 4 else { return nil }
        for child in Mirror(reflecting: error).children {
            if let found = child.value as? IOError { return found }
            if let errors = child.value as? [Any] {
                for element in errors {
                    for grandchild in Mirror(reflecting: element).children {
                        if let found = grandchild.value as? IOError { return found }
                    }
                }
            }
            if let nested = child.value as? any Error, let found = nestedIOError(in: nested, depth: depth + 1) { return found }
        }
        return nil
    }

    private static func seconds(_ duration: Duration) -> String {
        let value = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
    }
}

/// Byte counts in the units people read: "1 MiB", "64 KiB", "100 bytes".
struct ByteCount: CustomStringConvertible {
    let value: Int
    init(_ value: Int) { self.value = value }

    var description: String {
        if value >= 1 << 20, value % (1 << 20) == 0 { return "\(value >> 20) MiB" }
        if value >= 1 << 10, value % (1 << 10) == 0 { return "\(value >> 10) KiB" }
        return "\(value) bytes"
    }
}
