/// Reading numbers out of `UntypedJSON` values, where every JSON number is a `Double`
/// and a JSON boolean is a `Bool`, never a number.
public enum JSONNumber {
    /// The value as a finite `Double` if it is a JSON number (not a boolean).
    public static func double(_ value: Any?) -> Double? {
        guard let double = value as? Double else { return nil }
        return double.isFinite ? double : nil
    }
}
