import Testing

@testable import BrokerApp

@Suite("The heap arena cap defers to the environment")
struct HeapArenaLimitTests {
    @Test(
        "MALLOC_ARENA_MAX or a glibc.malloc.arena_max tunable is the operator's choice",
        arguments: [
            ([:], false),
            (["MALLOC_ARENA_MAX": "4"], true),
            (["GLIBC_TUNABLES": "glibc.malloc.arena_max=4"], true),
            (["GLIBC_TUNABLES": "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=8"], true),
            (["GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"], false),
            // A tunable that only contains the name is another tunable.
            (["GLIBC_TUNABLES": "glibc.malloc.arena_max_test=1"], false),
            (["GLIBC_TUNABLES": ""], false),
        ] as [([String: String], Bool)])
    func defersToEnvironment(environment: [String: String], isSet: Bool) {
        #expect(BrokerApplication.arenaLimitIsSet(environment: environment) == isSet)
    }
}
