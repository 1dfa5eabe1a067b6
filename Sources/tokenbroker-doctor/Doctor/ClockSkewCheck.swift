import Foundation

/// This machine's clock against the token service's `Date` header (a GET of the
/// tenant's OIDC discovery document at the authority host). Assertion and token
/// validity windows are judged on both clocks; Entra tolerates about five minutes.
struct ClockSkewCheck: DoctorCheck {
    /// Skew beyond the measurement's uncertainty that is still fine, and that is too much.
    static let warnAbove = 30
    static let failAbove = 300

    func run(_ context: DoctorContext) -> [DoctorFinding] {
        guard let http = context.http else { return [.skip("clock.skew", "--offline")] }
        let tenant = context.environment["AZURE_TENANT_ID"].flatMap { $0.isEmpty ? nil : $0 } ?? "common"
        let base = context.authorityHost.hasSuffix("/") ? String(context.authorityHost.dropLast()) : context.authorityHost
        let url = "\(base)/\(tenant)/v2.0/.well-known/openid-configuration"
        switch http.get(url) {
        case .unreachable(let reason):
            return [
                .warn(
                    "clock.skew", "\(base) unreachable: \(DoctorText.oneLine(reason))",
                    fix: "allow HTTPS egress to the authority host (proxy, firewall, DNS), or compare the clock with NTP yourself (chronyc tracking)")
            ]
        case .answered(_, let date, _, let sentAt, let receivedAt):
            return [Self.evaluate(dateHeader: date, sentAt: sentAt, receivedAt: receivedAt, source: base)]
        }
    }

    /// The verdict for a `Date` header received between `sentAt` and `receivedAt` (pure).
    static func evaluate(dateHeader: String?, sentAt: Date, receivedAt: Date, source: String) -> DoctorFinding {
        guard let dateHeader, let serverTime = httpDate(dateHeader) else {
            return .warn(
                "clock.skew", "\(source) sent no usable Date header\(dateHeader.map { " ('\($0.prefix(40))')" } ?? "")",
                fix: "compare the clock with NTP yourself (chronyc tracking, timedatectl)")
        }
        let local = (sentAt.timeIntervalSince1970 + receivedAt.timeIntervalSince1970) / 2
        // Date has whole seconds (truncated), and the server stamped it somewhere in the round trip.
        let uncertainty = Int((receivedAt.timeIntervalSince(sentAt) / 2).rounded(.up)) + 1
        let skew = Int((local - serverTime).rounded())
        let direction = skew >= 0 ? "ahead of" : "behind"
        let evidence = "this clock is \(DoctorText.duration(abs(skew))) \(direction) \(source) (±\(uncertainty)s)"
        let beyond = max(abs(skew) - uncertainty, 0)
        if beyond > failAbove {
            return .fail(
                "clock.skew", evidence,
                fix: "synchronise the clock (NTP: chrony, systemd-timesyncd); tokens look expired or not yet valid across this gap (AADSTS700024)")
        }
        if beyond > warnAbove {
            return .warn("clock.skew", evidence, fix: "synchronise the clock (NTP) before the gap reaches 5 minutes")
        }
        return .pass("clock.skew", evidence)
    }

    /// Seconds since 1970 of an IMF-fixdate (`Sun, 06 Dec 2026 11:00:00 GMT`), the only
    /// form a current server sends (RFC 9110 §5.6.7).
    static func httpDate(_ text: String) -> TimeInterval? {
        let fields = text.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard fields.count == 6, fields[0].hasSuffix(","), fields[5] == "GMT",
            let day = Int(fields[1]), let month = months.firstIndex(of: String(fields[2])), let year = Int(fields[3])
        else { return nil }
        let clock = fields[4].split(separator: ":").compactMap { Int($0) }
        guard clock.count == 3, (1...31).contains(day), (1970...9999).contains(year),
            (0...23).contains(clock[0]), (0...59).contains(clock[1]), (0...60).contains(clock[2])
        else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(clock[0])
        parts.tm_min = Int32(clock[1])
        parts.tm_sec = Int32(clock[2])
        return TimeInterval(timegm(&parts))
    }
}
