/// One area `tokenbroker doctor` examines (the environment, the token file, the socket …).
///
/// A check reads what it needs from the context and returns its findings; it never
/// throws: whatever goes wrong is a finding with its evidence and its fix.
protocol DoctorCheck {
    /// Examines one area and reports what it found.
    func run(_ context: DoctorContext) -> [DoctorFinding]
}

/// The verdict on one item.
enum DoctorStatus: String, Codable, Sendable, Comparable {
    case pass = "PASS"
    case warn = "WARN"
    case fail = "FAIL"
    /// Not applicable here (nothing to check, or an earlier check failed first).
    case skip = "SKIP"

    private var severity: Int {
        switch self {
        case .skip: 0
        case .pass: 1
        case .warn: 2
        case .fail: 3
        }
    }

    static func < (lhs: Self, rhs: Self) -> Bool { lhs.severity < rhs.severity }
}

/// One line of the report: what was checked, the verdict, the evidence and the fix.
///
/// The JSON field names (`id`, `status`, `evidence`, `fix`) are stable (docs/doctor.md).
struct DoctorFinding: Codable, Sendable, Equatable {
    /// Dotted name, e.g. `token.audience`; stable across releases.
    var id: String
    var status: DoctorStatus
    /// One line: what was seen. Never a token, only its claims.
    var evidence: String
    /// One line: what to do; nil when there is nothing to do.
    var fix: String?

    static func pass(_ id: String, _ evidence: String) -> Self { Self(id: id, status: .pass, evidence: evidence, fix: nil) }
    static func warn(_ id: String, _ evidence: String, fix: String) -> Self { Self(id: id, status: .warn, evidence: evidence, fix: fix) }
    static func fail(_ id: String, _ evidence: String, fix: String) -> Self { Self(id: id, status: .fail, evidence: evidence, fix: fix) }
    static func skip(_ id: String, _ evidence: String) -> Self { Self(id: id, status: .skip, evidence: evidence, fix: nil) }
}
