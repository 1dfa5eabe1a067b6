import FoundationEssentials

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The two timestamp formats Entra writes, in UTC.
enum EntraTime {
    /// `2026-11-29 01:02:03Z`, as in `timestamp` and the description's trailer.
    static func trailer(_ date: Date) -> String {
        let p = parts(date)
        return "\(pad(p.year, 4))-\(pad(p.month))-\(pad(p.day)) \(pad(p.hour)):\(pad(p.minute)):\(pad(p.second))Z"
    }

    /// `2026-11-29T01:02:03.1234567Z` (seven fractional digits), as in AADSTS700024.
    static func precise(_ date: Date) -> String {
        let p = parts(date)
        return "\(pad(p.year, 4))-\(pad(p.month))-\(pad(p.day))T\(pad(p.hour)):\(pad(p.minute)):\(pad(p.second)).\(pad(p.ticks, 7))Z"
    }

    /// `Sun, 06 Dec 2026 11:00:00 GMT` (RFC 9110 IMF-fixdate), for the `Date` header.
    static func httpDate(_ date: Date) -> String {
        let p = parts(date)
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var t = tm()
        gmtime_r(&seconds, &t)
        let weekday = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][Int(t.tm_wday)]
        let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][p.month - 1]
        return "\(weekday), \(pad(p.day)) \(month) \(p.year) \(pad(p.hour)):\(pad(p.minute)):\(pad(p.second)) GMT"
    }

    /// `value` in decimal with leading zeros to `width` digits (`%0Nd`).
    private static func pad(_ value: Int, _ width: Int = 2) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    private static func parts(_ date: Date) -> (year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, ticks: Int) {
        let interval = date.timeIntervalSince1970
        var seconds = time_t(interval.rounded(.down))
        let ticks = min(Int(((interval - interval.rounded(.down)) * 10_000_000).rounded(.down)), 9_999_999)
        var t = tm()
        gmtime_r(&seconds, &t)
        return (Int(t.tm_year) + 1900, Int(t.tm_mon) + 1, Int(t.tm_mday), Int(t.tm_hour), Int(t.tm_min), Int(t.tm_sec), ticks)
    }
}
