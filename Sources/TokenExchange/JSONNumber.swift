import Foundation

/// Reading numbers out of `JSONSerialization` results.
///
/// On Linux a JSON `0` or `1` arrives as an `NSNumber` that also answers
/// `is Bool`; only a real JSON boolean has the boolean type itself.
enum JSONNumber {
    private static let booleanType = type(of: NSNumber(value: true))

    /// The value as a finite `Double` if it is a JSON number (not a boolean).
    static func double(_ value: Any?) -> Double? {
        guard let number = value as? NSNumber, type(of: number) != booleanType else { return nil }
        let double = number.doubleValue
        return double.isFinite ? double : nil
    }
}
