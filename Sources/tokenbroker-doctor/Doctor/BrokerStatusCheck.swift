import BrokerClient
import TokenBrokerProtocol
import TokenExchange

/// The broker's own view, from its `status` answer: whether it is ready, its identities,
/// and each identity's last error with the AADSTS code explained and its fix.
struct BrokerStatusCheck: DoctorCheck {
    func run(_ context: DoctorContext) -> [DoctorFinding] {
        let response: BrokerResponse
        do {
            let connection = try BrokerConnection(path: context.socketPath, timeoutSeconds: context.timeoutSeconds)
            response = try connection.roundTrip(BrokerRequest(op: "status", id: .number(1)))
        } catch {
            return [.skip("broker.status", "no answer from the broker (see socket.*): \(Self.describe(error))")]
        }
        guard response.ok, let status = response.status else {
            let error = response.error
            return [
                .fail(
                    "broker.status", "the broker refused status: \(error?.code ?? "error"): \(DoctorText.oneLine(error?.message ?? ""))",
                    fix: "run doctor as a user the broker serves (its allow: rules)")
            ]
        }
        return Self.evaluate(status)
    }

    /// The findings for a status answer (pure).
    static func evaluate(_ status: BrokerStatus) -> [DoctorFinding] {
        let names = status.identities.map { "\($0.name) (\($0.exchange))" }.joined(separator: ", ")
        let summary =
            "\(status.ready ? "ready" : "not ready"); \(status.identities.count) identit\(status.identities.count == 1 ? "y" : "ies")\(names.isEmpty ? "" : ": \(names)")"
        var findings: [DoctorFinding] = []
        if status.identities.isEmpty {
            findings.append(
                .fail(
                    "broker.status", summary,
                    fix:
                        "configure an identity: set AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE for the broker, or add identities: to its configuration"
                ))
        } else if status.ready {
            findings.append(.pass("broker.status", summary))
        } else {
            findings.append(.warn("broker.status", summary, fix: "see the broker.identity.* findings"))
        }
        for identity in status.identities { findings.append(evaluate(identity)) }
        return findings
    }

    static func evaluate(_ identity: IdentityStatus) -> DoctorFinding {
        let id = "broker.identity.\(identity.name)"
        guard let error = identity.lastError else {
            return .pass(
                id,
                "\(identity.exchange) from \(identity.source); \(identity.cachedScopes.count) cached scope\(identity.cachedScopes.count == 1 ? "" : "s"), no error"
            )
        }
        var message = DoctorText.oneLine(error.message, limit: 300)
        if let codes = error.upstream?.codes, let code = codes.first(where: { AADSTS.explanation($0) != nil }) ?? codes.first {
            let entry = AADSTS.explanation(code)
            // The broker's message starts with the code; the evidence names it already.
            if message.hasPrefix("AADSTS\(code): ") { message.removeFirst("AADSTS\(code): ".count) }
            return .fail(
                id, "last error AADSTS\(code)\(entry.map { " (\($0.meaning))" } ?? ""): \(message)",
                fix: entry?.fix ?? "look up AADSTS\(code) at https://login.microsoftonline.com/error?code=\(code)")
        }
        return .fail(id, "last error \(error.code): \(message)", fix: fix(forBrokerCode: error.code))
    }

    private static func fix(forBrokerCode code: String) -> String {
        switch code {
        case "assertion_unavailable": "the broker cannot read the identity's source: see token.file and the broker's log"
        case "assertion_expired": "the assertion file is stale: see token.lifetime and token.rotation"
        case "upstream_unavailable": "the token service is unreachable from the broker: check DNS, proxy and egress to the authority host"
        case "throttled": "the token service throttles this client; the broker retries after Retry-After"
        default: "see the broker's log for this identity"
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case BrokerConnection.Failure.unreachable(let reason), BrokerConnection.Failure.protocolError(let reason): reason
        case BrokerConnection.Failure.timedOut: "timed out"
        case BrokerConnection.Failure.closed: "the broker closed the connection"
        default: "\(error)"
        }
    }
}

extension DoctorText {
    /// Text on one line, cut at a word boundary after `limit` characters.
    static func oneLine(_ text: String, limit: Int = 200) -> String {
        let flat = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        guard flat.count > limit else { return flat }
        let cut = flat.prefix(limit)
        return (cut.lastIndex(of: " ").map { String(cut[..<$0]) } ?? String(cut)) + "…"
    }
}
