/// Secret comparison for the compatibility protocols' header secrets (`X-IDENTITY-HEADER`,
/// the AWS `Authorization` token), shared by the daemon's endpoints and the relay.
public enum ConstantTime {
    /// Whether `given` equals `secret`, compared without an early exit, so timing does not
    /// reveal how much of a guess was right. An empty secret matches nothing.
    public static func equal(_ given: [UInt8], _ secret: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: given.count ^ secret.count)
        for index in 0..<max(given.count, secret.count) {
            difference |= (index < given.count ? given[index] : 0) ^ (index < secret.count ? secret[index] : 0)
        }
        return difference == 0 && !secret.isEmpty
    }
}
