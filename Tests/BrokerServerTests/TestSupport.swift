import Foundation
import NIOCore
import NIOEmbedded
import Synchronization
import TokenBrokerProtocol

@testable import BrokerServer

/// A responder whose answers the tests script: `ping` and tokens for most scopes
/// are immediate (a cache hit); scope `slow` waits in `response(to:from:)` until
/// the test opens the gate.
final class ScriptedResponder: BrokerResponder {
    static let slowScope = "slow"
    static let missScope = "miss"
    static let throttledScope = "throttled"

    private struct State {
        var ready = (true, "ready")
        var gateOpen = false
        var parked: [CheckedContinuation<Void, Never>] = []
        var arrivalWaiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []
        var arrivals = 0
        var requests: [BrokerRequest] = []
        var peers: [PeerCredentials] = []
    }

    private let state = Mutex(State())

    static func token(for scope: String) -> String { "token-for-\(scope)" }

    static func answer(_ request: BrokerRequest) -> BrokerResponse {
        switch request.op {
        case "ping":
            return BrokerResponse(id: request.id, ok: true)
        case "status":
            return BrokerResponse(id: request.id, ok: true, status: BrokerStatus(ready: true, identities: []))
        case "token" where request.scope == throttledScope:
            return .failure(id: request.id, WireError(code: .throttled, message: "slow down", retryable: true, retryAfter: 30))
        case "token":
            let scope = request.scope ?? request.resource.map { "\($0)/.default" } ?? ""
            return BrokerResponse(
                id: request.id, ok: true, token: token(for: scope), tokenType: "Bearer", expiresOn: 1_795_917_723, expiresIn: 3600,
                identity: request.identity ?? "default", scope: scope)
        default:
            return .failure(id: request.id, WireError(code: .unknownOp, message: "unknown op '\(request.op)'"))
        }
    }

    func setReadiness(_ ready: Bool, _ reason: String) { state.withLock { $0.ready = (ready, reason) } }

    var requests: [BrokerRequest] { state.withLock { $0.requests } }
    var peers: [PeerCredentials] { state.withLock { $0.peers } }

    func answer(_ request: BrokerRequest, from peer: PeerCredentials) -> BrokerAnswer {
        state.withLock {
            $0.requests.append(request)
            $0.peers.append(peer)
        }
        guard request.scope != Self.slowScope, request.scope != Self.missScope else {
            return .exchange(ScriptedTicket(responder: self, request: request))
        }
        guard request.scope == Self.repeatableScope else { return .now(Self.answer(request)) }
        return .repeatable(Self.answer(request), repeats.check)
    }

    /// Token answers for this scope may be repeated, as `repeats` says.
    static let repeatableScope = "https://repeat.example/.default"
    let repeats = ScriptedRepeat()

    /// An exchange: answered from a task (after the gate, for `slow`).
    private struct ScriptedTicket: ExchangeTicket {
        let responder: ScriptedResponder
        let request: BrokerRequest

        func wait(_ completion: @escaping @Sendable (BrokerResponse) -> Void) {
            Task { [responder, request] in completion(await responder.response(to: request)) }
        }
    }

    fileprivate func response(to request: BrokerRequest) async -> BrokerResponse {
        if request.scope == Self.slowScope {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let (proceed, woken) = state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
                    state.arrivals += 1
                    let n = state.arrivals
                    let woken = state.arrivalWaiters.filter { $0.count <= n }.map(\.continuation)
                    state.arrivalWaiters.removeAll { $0.count <= n }
                    if !state.gateOpen { state.parked.append(continuation) }
                    return (state.gateOpen, woken)
                }
                for waiter in woken { waiter.resume() }
                if proceed { continuation.resume() }
            }
        }
        return Self.answer(request)
    }

    func readiness() -> (ready: Bool, reason: String) { state.withLock { $0.ready } }

    /// Returns once `count` slow requests are waiting at the gate (or went through).
    func waitForSlowArrivals(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.arrivals >= count { return true }
                state.arrivalWaiters.append((count, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Lets every slow request (and later ones) answer.
    func openGate() {
        let parked = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.gateOpen = true
            defer { state.parked = [] }
            return state.parked
        }
        for continuation in parked { continuation.resume() }
    }
}

/// A `RepeatCheck` whose verdict the test sets; it counts every renewal (answers) and
/// every call (a run of identical pipelined requests is one call).
final class ScriptedRepeat: Sendable {
    private let state = Mutex<(verdict: RepeatVerdict, renewals: Int, calls: Int)>((.holds, 0, 0))

    var verdict: RepeatVerdict {
        get { state.withLock { $0.verdict } }
        set { state.withLock { $0.verdict = newValue } }
    }

    var renewals: Int { state.withLock { $0.renewals } }
    var calls: Int { state.withLock { $0.calls } }

    var check: RepeatCheck { RepeatCheck { [self] _, answers in renew(answers) } }

    func renew(_ answers: Int = 1) -> RepeatVerdict {
        state.withLock { state in
            state.renewals += answers
            state.calls += 1
            return state.verdict
        }
    }
}

/// A connection guard with timeouts no test reaches.
func testGuard() -> ConnectionGuard {
    ConnectionGuard(requestTimeout: .seconds(10), idleTimeout: .seconds(60))
}

let testPeer = PeerCredentials(pid: 4242, uid: 1000, gid: 1000)

extension ByteBuffer {
    var text: String { String(buffer: self) }
}

/// Everything written to an `EmbeddedChannel` so far, as one string.
func drainOutbound(_ channel: EmbeddedChannel) throws -> String {
    var text = ""
    while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += buffer.text }
    return text
}

/// The NDJSON response lines in `text`, decoded.
func responses(in text: String) throws -> [BrokerResponse] {
    try text.split(separator: "\n").map { try JSONDecoder().decode(BrokerResponse.self, from: Data($0.utf8)) }
}

/// One HTTP/1.1 response read from raw bytes.
struct RawHTTPResponse {
    var status: Int
    var headers: [String: String]
    var body: String

    var json: BrokerResponse? { try? JSONDecoder().decode(BrokerResponse.self, from: Data(body.utf8)) }

    /// Splits `text` into the responses it contains (by `Content-Length`).
    static func parseAll(_ text: String) -> [RawHTTPResponse] {
        var rest = Substring(text)
        var responses: [RawHTTPResponse] = []
        while let end = rest.range(of: "\r\n\r\n") {
            let lines = rest[..<end.lowerBound].components(separatedBy: "\r\n")
            let status = Int(lines[0].split(separator: " ")[1]) ?? 0
            var headers: [String: String] = [:]
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            let length = Int(headers["content-length"] ?? "0") ?? 0
            let bodyStart = end.upperBound
            let body = String(decoding: Array(rest[bodyStart...].utf8.prefix(length)), as: UTF8.self)
            responses.append(RawHTTPResponse(status: status, headers: headers, body: body))
            rest = Substring(String(decoding: Array(rest[bodyStart...].utf8.dropFirst(length)), as: UTF8.self))
        }
        return responses
    }
}

/// What this test process is, read independently of the code under test.
enum ProcessFacts {
    static func executable() -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    }

    static func cgroup() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return nil }
        return CgroupPath.select(fromProcFile: text)
    }

    /// getgroups(2), sorted as the kernel keeps them.
    static func supplementaryGroups() -> [UInt32] {
        let count = getgroups(0, nil)
        var groups = [gid_t](repeating: 0, count: Int(max(count, 0)))
        let n = getgroups(count, &groups)
        return Array(groups.prefix(Int(max(n, 0)))).sorted()
    }
}
