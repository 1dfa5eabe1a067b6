import BrokerClient
import Foundation
import Glibc
import OffPool
import Testing
import TokenBrokerProtocol

/// `BrokerConnection` over a real Unix socket: the request line it writes (JSONEncoder's bytes
/// before), and the answers it reads with `UntypedJSON` (JSONDecoder's rules before).
@Suite struct BrokerAnswerReadingTests {
    /// Serves one connection on a socket in a temp directory: reads one request line, answers
    /// `answer`, and returns the request line with what the client made of the answer.
    private func exchange(
        _ request: BrokerRequest, answer: String
    ) async throws -> (
        request: String, result: Result<BrokerResponse, BrokerConnection.Failure>
    ) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tb-answer-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/broker.sock"
        let (listener, bound) = boundUnixSocket(path)
        defer { close(listener) }
        try #require(bound == 0 && listen(listener, 1) == 0)
        return try await offPool {
            let served = ServedLine()
            let thread = Thread {
                let connection = accept(listener, nil, nil)
                guard connection >= 0 else { return served.finish("") }
                var line: [UInt8] = []
                var byte: UInt8 = 0
                while read(connection, &byte, 1) == 1, byte != UInt8(ascii: "\n") { line.append(byte) }
                let bytes = Array((answer + "\n").utf8)
                _ = bytes.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
                close(connection)
                served.finish(String(decoding: line, as: UTF8.self))
            }
            thread.start()
            let result: Result<BrokerResponse, BrokerConnection.Failure>
            do throws(BrokerConnection.Failure) {
                let connection = try BrokerConnection(path: path, timeoutSeconds: 30)
                result = .success(try connection.roundTrip(request))
            } catch {
                result = .failure(error)
            }
            return (served.wait(), result)
        }
    }

    @Test("the request line has JSONEncoder's fields and order")
    func requestLine() async throws {
        let request = BrokerRequest(
            op: "token", id: .number(1), scope: "https://storage.azure.com/.default", identity: "a\"b", minValiditySeconds: 600, clientId: "c",
            tenantId: "t", volume: "v")
        let (line, _) = try await exchange(request, answer: #"{"id":1,"ok":true}"#)
        #expect(
            line
                == #"{"op":"token","id":1,"scope":"https://storage.azure.com/.default","identity":"a\"b","minValiditySeconds":600,"clientId":"c","tenantId":"t","volume":"v"}"#
        )
        #expect(try JSONDecoder().decode(BrokerRequest.self, from: Data(line.utf8)) == request)
    }

    @Test("each answer shape reads as JSONDecoder read it", arguments: BrokerAnswerShapes.all)
    func shapes(_ shape: BrokerAnswerShapes.Shape) async throws {
        let (_, result) = try await exchange(BrokerRequest(op: "status", id: .number(1)), answer: shape.line)
        let expected = try JSONDecoder().decode(BrokerResponse.self, from: Data(shape.line.utf8))
        #expect(try result.get() == expected, "\(shape.name)")
        #expect(try result.get() == shape.response, "\(shape.name)")
    }

    @Test(
        "an answer that is not a v1 response is a protocol error naming the field",
        arguments: [
            (#"{"id":1}"#, "field 'ok'"),
            (#"{"id":1,"ok":"yes"}"#, "field 'ok'"),
            (#"{"id":1,"ok":false,"error":{"code":"x","retryable":false}}"#, "field 'error.message'"),
            (#"{"id":1,"ok":true,"expiresOn":1.5}"#, "field 'expiresOn'"),
            (#"{"id":1,"ok":true,"status":{"version":1,"ready":true,"identities":[{"name":"a"}]}}"#, "field 'status.identities[0].exchange'"),
            (#"[1,2]"#, "not a protocol v1 JSON object"),
            (#"{"id":1,"ok":tru"#, "not a protocol v1 JSON object"),
        ])
    func malformed(line: String, named: String) async throws {
        let (_, result) = try await exchange(BrokerRequest(op: "ping", id: .number(1)), answer: line)
        guard case .failure(.protocolError(let reason)) = result else {
            Issue.record("\(line): \(result)")
            return
        }
        #expect(reason.contains(named), "\(reason)")
    }
}

/// The answer line a test's server read, handed from its thread.
private final class ServedLine: @unchecked Sendable {
    private let condition = NSCondition()
    private var line: String?

    func finish(_ line: String) {
        condition.lock()
        self.line = line
        condition.signal()
        condition.unlock()
    }

    func wait() -> String {
        condition.lock()
        defer { condition.unlock() }
        while line == nil { condition.wait() }
        return line!
    }
}
