import Glibc
import SystemdSupport
import Testing

/// What the daemon accepts back from the file-descriptor store. The sealed-memfd path,
/// unsealed memfds and flipped bytes are covered end to end in WarmRestartTests.
@Suite struct FileDescriptorStoreReading {
    @Test func aDescriptorThatCannotBeSealedIsRefused() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[1]) }
        _ = "not a memfd".withCString { write(ends[1], $0, 11) }
        #expect(throws: SystemdSupportError(.notSealed, "the descriptor is not a sealable memfd (F_GET_SEALS: Invalid argument)")) {
            _ = try FileDescriptorStore.read(descriptor: ends[0])
        }
    }
}
