import Foundation
import TestRandom
import Testing
import TokenExchange

@Suite struct RFC3339Dates {
    private static func formatter(fractional: Bool = false) -> ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = fractional ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
        return formatter
    }

    @Test("it writes what Foundation's formatter writes, and reads that back, on random instants 1583…9999 (before, Foundation counts Julian days)")
    func agreesWithFoundation() {
        let plain = Self.formatter()
        var generator = SeededRandom()
        for _ in 0..<5_000 {
            let seconds = TimeInterval(Int.random(in: -12_212_553_600..<253_402_300_800, using: &generator))
            let instant = Date(timeIntervalSince1970: seconds)
            let text = RFC3339.string(from: instant)
            #expect(text == plain.string(from: instant), "\(generator)")
            #expect(RFC3339.date(text) == instant, "\(text) (\(generator))")
        }
    }

    @Test("it reads what Foundation reads: fractions and offsets")
    func readsFractionsAndOffsets() {
        let fractional = Self.formatter(fractional: true)
        for text in ["2026-11-29T02:02:03.250Z", "2026-11-29T02:02:03+01:30", "2026-11-29T02:02:03.5-08:00", "2028-02-29T23:59:59Z"] {
            let ours = RFC3339.date(text)
            let theirs = fractional.date(from: text) ?? Self.formatter().date(from: text)
            #expect(ours != nil && theirs != nil && abs(ours!.timeIntervalSince(theirs!)) < 0.001, "\(text)")
        }
        #expect(RFC3339.date("2026-11-29 02:02:03z") == RFC3339.date("2026-11-29T02:02:03Z"))
        #expect(RFC3339.date("2016-12-31T23:59:60Z") == RFC3339.date("2016-12-31T23:59:59Z"))  // a leap second
    }

    @Test("instants before year 0 or after 9999 are written clamped, and fractions rounded down")
    func clampsAndRounds() {
        #expect(RFC3339.string(from: Date(timeIntervalSince1970: 1.999)) == "1970-01-01T00:00:01Z")
        #expect(RFC3339.string(from: Date(timeIntervalSince1970: -0.5)) == "1969-12-31T23:59:59Z")
        #expect(RFC3339.string(from: Date(timeIntervalSince1970: 1e12)) == "9999-12-31T23:59:59Z")
        #expect(RFC3339.string(from: Date(timeIntervalSince1970: -1e12)) == "0000-01-01T00:00:00Z")
    }

    @Test(arguments: [
        "", "2026-11-29", "2026-11-29T02:02:03", "2026-11-29T02:02:03.Z", "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
        "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-11-29T24:00:00Z", "2026-11-29T02:60:00Z", "2026-11-29T02:02:61Z",
        "2026-11-29T02:02:03+24:00", "2026-11-29T02:02:03+0100", "2026-11-29T02:02:03Z ", "26-11-29T02:02:03Z", "2026-11-29T02:02:03GMT",
        "２０２６-11-29T02:02:03Z",
    ])
    func otherTextIsNotADate(text: String) {
        #expect(RFC3339.date(text) == nil)
    }
}
