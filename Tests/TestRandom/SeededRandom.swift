import Glibc

/// SplitMix64: the generator of tests whose inputs are random. Its seed comes from
/// `TOKENBROKER_TEST_SEED` when set, else is fresh each run; a failing expectation names it
/// (interpolate the generator: `"… \(random)"`), so `TOKENBROKER_TEST_SEED=<seed>` replays that run.
public struct SeededRandom: RandomNumberGenerator, CustomStringConvertible, Sendable {
    public let seed: UInt64
    private var state: UInt64

    /// A fixed seed, for tests that pin one particular sequence.
    public init(seed: UInt64) {
        self.seed = seed
        state = seed
    }

    /// `TOKENBROKER_TEST_SEED` (decimal) when set, else a fresh seed.
    public init() {
        if let given = getenv("TOKENBROKER_TEST_SEED") {
            let text = String(cString: given)
            guard let seed = UInt64(text) else { preconditionFailure("TOKENBROKER_TEST_SEED=\(text) is not a decimal UInt64") }
            self.init(seed: seed)
        } else {
            self.init(seed: UInt64.random(in: 0...UInt64.max))
        }
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public var description: String { "TOKENBROKER_TEST_SEED=\(seed)" }
}
