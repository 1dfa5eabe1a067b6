import Foundation

/// Every finding of a run, rendered as text or as the JSON document of docs/doctor.md.
struct DoctorReport: Encodable {
    /// The JSON document's version; bumped only when a field changes meaning.
    var version = 1
    /// False when any finding failed (the exit status is then 1).
    var ok: Bool
    /// How many findings had each status, keyed `pass`, `warn`, `fail`, `skip`.
    var counts: [String: Int]
    var checks: [DoctorFinding]

    init(_ findings: [DoctorFinding]) {
        checks = findings
        ok = !findings.contains { $0.status == .fail }
        counts = Dictionary(
            uniqueKeysWithValues: [DoctorStatus.pass, .warn, .fail, .skip].map { status in
                (status.rawValue.lowercased(), findings.filter { $0.status == status }.count)
            })
    }

    func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// `PASS  token.audience  aud=…` with the fix indented below; a summary line last.
    func text() -> String {
        let width = min(checks.map(\.id.count).max() ?? 0, 30)
        var lines: [String] = []
        for finding in checks {
            let padded = finding.id.padding(toLength: max(width, finding.id.count), withPad: " ", startingAt: 0)
            lines.append("\(finding.status.rawValue)  \(padded)  \(finding.evidence)")
            if let fix = finding.fix { lines.append("      \(String(repeating: " ", count: width))  fix: \(fix)") }
        }
        let summary = [DoctorStatus.fail, .warn, .pass, .skip].map { "\(counts[$0.rawValue.lowercased()] ?? 0) \($0.rawValue.lowercased())" }
        lines.append("")
        lines.append("\(ok ? "no failures" : "FAILED"): \(summary.joined(separator: ", "))")
        return lines.joined(separator: "\n")
    }
}
