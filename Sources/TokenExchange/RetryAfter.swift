// Hand-written (HTTPDate): DateFormatter leaked 128 bytes per malformed Retry-After date (docs/fuzzing.md, `entra`).
public import FoundationEssentials

/// Parses `Retry-After`: delta-seconds or an HTTP date.
public enum RetryAfter {
    /// The wait, clamped to 0…1 h; nil when absent or unreadable.
    public static func parse(_ value: String?, now: Date) -> Duration? {
        guard let value = value?.trimmingWhitespace(), !value.isEmpty else { return nil }
        if let seconds = Int(value) { return .seconds(min(max(seconds, 0), 3600)) }
        guard let date = HTTPDate.parse(value) else { return nil }
        return .seconds(min(max(Int(date.timeIntervalSince(now).rounded(.up)), 0), 3600))
    }
}

/// An HTTP date in the form servers send (RFC 9110 §5.6.7 IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`), read without `DateFormatter`: no locale, no ICU,
/// and nothing Foundation keeps behind (its formatter leaked a character set on some
/// malformed dates, which the fuzzer found). The two obsolete forms are not accepted;
/// `Retry-After` then counts as absent.
public enum HTTPDate {
    public static func parse(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        // "Sun, 06 Nov 1994 08:49:37 GMT": 29 bytes, separators at fixed places.
        guard bytes.count == 29, bytes[3] == UInt8(ascii: ","), bytes[4] == 0x20, bytes[7] == 0x20, bytes[11] == 0x20,
            bytes[16] == 0x20, bytes[19] == UInt8(ascii: ":"), bytes[22] == UInt8(ascii: ":"), bytes[25] == 0x20,
            bytes[26...] == Array("GMT".utf8)[...],
            Self.dayNames.contains(String(decoding: bytes[0..<3], as: UTF8.self)),
            let month = Self.monthNames.firstIndex(of: String(decoding: bytes[8..<11], as: UTF8.self)).map({ $0 + 1 }),
            let day = DateFields.decimal(bytes[5..<7]), let year = DateFields.decimal(bytes[12..<16]),
            let hour = DateFields.decimal(bytes[17..<19]), let minute = DateFields.decimal(bytes[20..<22]),
            let second = DateFields.decimal(bytes[23..<25]),
            year >= 1970, (1...DateFields.daysIn(month: month, year: year)).contains(day), hour < 24, minute < 60, second <= 60
        else { return nil }
        let days = DateFields.daysSinceEpoch(year: year, month: month, day: day)
        return Date(timeIntervalSince1970: TimeInterval(((days * 24 + hour) * 60 + minute) * 60 + min(second, 59)))
    }

    private static let dayNames: Set = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    private static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
}
