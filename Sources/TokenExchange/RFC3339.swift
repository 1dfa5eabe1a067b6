// Hand-written: Foundation's formatters go through ICU, and one leaked 128 bytes per malformed date (docs/fuzzing.md).
public import FoundationEssentials
import Glibc

/// RFC 3339 instants, read and written without Foundation's formatters (which go through
/// ICU, cost a formatter per call, and once leaked on malformed input: see `HTTPDate`).
///
/// Read: `2026-11-29T02:02:03Z` as AWS, plugins and people write them — with or without
/// fractional seconds (any number of digits), `Z` or a numeric offset, `T`, `t` or a space
/// between date and time. Written: UTC, whole seconds, `2026-11-29T02:02:03Z`.
public enum RFC3339 {
    public static func date(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        var index = 0
        func digits(_ count: Int) -> Int? {
            guard index + count <= bytes.count, let value = DateFields.decimal(bytes[index..<(index + count)]) else { return nil }
            index += count
            return value
        }
        func expect(_ characters: String) -> Bool {
            guard index < bytes.count, characters.utf8.contains(bytes[index]) else { return false }
            index += 1
            return true
        }
        guard let year = digits(4), expect("-"), let month = digits(2), expect("-"), let day = digits(2), expect("Tt "),
            let hour = digits(2), expect(":"), let minute = digits(2), expect(":"), let second = digits(2)
        else { return nil }
        var fraction = 0.0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let start = index
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                fraction += Double(bytes[index] - UInt8(ascii: "0")) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        var offset = 0
        if expect("Zz") {
        } else if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
            let sign = bytes[index] == UInt8(ascii: "-") ? -1 : 1
            index += 1
            guard let hours = digits(2), expect(":"), let minutes = digits(2), hours < 24, minutes < 60 else { return nil }
            offset = sign * (hours * 3600 + minutes * 60)
        } else {
            return nil
        }
        guard index == bytes.count, (1...12).contains(month), (1...DateFields.daysIn(month: month, year: year)).contains(day),
            hour < 24, minute < 60, second <= 60
        else { return nil }
        let days = DateFields.daysSinceEpoch(year: year, month: month, day: day)
        // A leap second (`:60`) is read as the last second of its minute.
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + min(second, 59) - offset
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    /// `date` in UTC to the second, rounded down; years outside 0000–9999 are clamped to them.
    public static func string(from date: Date) -> String {
        let limit = 253_402_300_799.0  // 9999-12-31T23:59:59Z
        let seconds = Int(max(-62_167_219_200, min(limit, date.timeIntervalSince1970.rounded(.down))))  // from 0000-01-01
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let timeOfDay = seconds - days * 86_400
        let (year, month, day) = DateFields.civil(daysSinceEpoch: days)
        var text = [UInt8]()
        text.reserveCapacity(20)
        func append(_ value: Int, width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            while divisor > 0 {
                text.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
                divisor /= 10
            }
        }
        append(year, width: 4)
        text.append(UInt8(ascii: "-"))
        append(month, width: 2)
        text.append(UInt8(ascii: "-"))
        append(day, width: 2)
        text.append(UInt8(ascii: "T"))
        append(timeOfDay / 3600, width: 2)
        text.append(UInt8(ascii: ":"))
        append(timeOfDay / 60 % 60, width: 2)
        text.append(UInt8(ascii: ":"))
        append(timeOfDay % 60, width: 2)
        text.append(UInt8(ascii: "Z"))
        return String(decoding: text, as: UTF8.self)
    }
}
