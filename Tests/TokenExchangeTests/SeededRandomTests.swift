import TestRandom
import Testing

/// The tests' generator is SplitMix64, so a printed seed replays the same inputs.
@Suite struct SeededRandomTests {
    @Test("SplitMix64's reference outputs for seed 0, and one seed gives one sequence")
    func replays() {
        var zero = SeededRandom(seed: 0)
        #expect([zero.next(), zero.next()] == [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4])
        var a = SeededRandom(seed: 1_234_567), b = SeededRandom(seed: 1_234_567)
        #expect((0..<100).map { _ in a.next() } == (0..<100).map { _ in b.next() })
        #expect("\(a)" == "TOKENBROKER_TEST_SEED=1234567")
    }
}
