import Foundation
import Logging
import ManualClock
import Testing
import TokenCache
import TokenExchange

/// The warm-restart format: what goes in comes out; anything damaged is refused by name.
@Suite struct CacheSnapshotCodec {
    static let issued = Date(timeIntervalSince1970: 1_795_914_123.25)
    static let fingerprint = Array(repeating: UInt8(0xAB), count: 32)

    static func sample() -> CacheSnapshot {
        let entra = AccessToken(
            value: "eyJ.entra.token", issuedAt: issued, expiresAt: issued + 3600, refreshAt: issued + 1800, extendedExpiresAt: issued + 7200)
        let aws = AWSCredentials(
            accessKeyId: "ASIAEXAMPLE", secretAccessKey: "secret/key", sessionToken: "session-token", expiration: issued + 900,
            accountId: "123456789012")
        let awsToken = AccessToken(value: "session-token", tokenType: "AWS", issuedAt: issued, expiresAt: issued + 900, awsCredentials: aws)
        return CacheSnapshot(entries: [
            .init(
                identity: "storage-writer", fingerprint: fingerprint, scope: Scope("https://storage.azure.com/.default"), token: entra,
                refreshAt: issued + 1791.5, lastRequested: issued + 12),
            .init(
                identity: "ünïcode-aws", fingerprint: [1, 2, 3], scope: Scope("arn:aws:iam::123456789012:role/r"), token: awsToken,
                refreshAt: issued + 450, lastRequested: issued),
        ])
    }

    @Test func roundTripKeepsEveryField() throws {
        let original = Self.sample()
        let decoded = try CacheSnapshot(decoding: original.encoded())
        #expect(decoded.entries.count == 2)
        for (a, b) in zip(original.entries, decoded.entries) {
            #expect(a.identity == b.identity && a.fingerprint == b.fingerprint && a.scope == b.scope)
            #expect(a.refreshAt == b.refreshAt && a.lastRequested == b.lastRequested)
            #expect(a.token.value == b.token.value && a.token.tokenType == b.token.tokenType)
            #expect(a.token.issuedAt == b.token.issuedAt && a.token.expiresAt == b.token.expiresAt)
            #expect(a.token.refreshAt == b.token.refreshAt && a.token.extendedExpiresAt == b.token.extendedExpiresAt)
            #expect(a.token.awsCredentials == b.token.awsCredentials)
        }
        #expect(decoded.entries[1].token.awsCredentials?.accountId == "123456789012")
        #expect(try CacheSnapshot(decoding: CacheSnapshot(entries: []).encoded()).entries.isEmpty)
    }

    @Test(arguments: [0, 5, 17, 18, 40, -1])
    func truncatedIsRefused(keep: Int) throws {
        let bytes = Self.sample().encoded()
        let cut = Array(bytes.prefix(keep < 0 ? bytes.count - 1 : keep))
        #expect(throws: CacheSnapshotError.self) { try CacheSnapshot(decoding: cut) }
        do { _ = try CacheSnapshot(decoding: cut) } catch { #expect(error.code == .truncated, "\(error)") }
    }

    @Test func everyFlippedPayloadByteFailsTheChecksum() throws {
        let bytes = Self.sample().encoded()
        for index in 18..<bytes.count {
            var damaged = bytes
            damaged[index] ^= 0x01
            do {
                _ = try CacheSnapshot(decoding: damaged)
                Issue.record("byte \(index) flipped was accepted")
            } catch {
                #expect(error.code == .checksumMismatch, "byte \(index): \(error)")
            }
        }
    }

    @Test func wrongVersionAndMagicAreNamed() throws {
        var bytes = Self.sample().encoded()
        bytes[9] = 2  // version 1 → 2 (big-endian u16 at offset 8)
        do { _ = try CacheSnapshot(decoding: bytes); Issue.record("version 2 accepted") } catch {
            #expect(error.code == .unsupportedVersion)
            #expect(error.message.contains("version 2"))
        }
        var magic = Self.sample().encoded()
        magic[0] = UInt8(ascii: "X")
        do { _ = try CacheSnapshot(decoding: magic); Issue.record("bad magic accepted") } catch { #expect(error.code == .badMagic) }
    }

    @Test func messagesNeverShowTokenBytes() throws {
        var bytes = Self.sample().encoded()
        bytes[bytes.count - 20] ^= 0xFF
        do { _ = try CacheSnapshot(decoding: bytes) } catch { #expect(!error.description.contains("eyJ")) }
    }
}

/// Restoring into a cache: valid tokens come back with their refresh times; tokens of
/// changed or unknown identities, and expired ones, do not.
@Suite struct CacheRestore {
    static let same: [UInt8] = [7, 7, 7]

    /// A cache holding one token obtained at the clock's start, and its snapshot.
    static func warmSnapshot(_ f: CacheFixture) async throws -> CacheSnapshot {
        _ = try await f.token()
        return f.cache.snapshot { $0 == CacheFixture.identity ? same : nil }
    }

    @Test func restoredTokenIsServedWithoutAnExchangeAndKeepsItsSchedule() async throws {
        let before = CacheFixture()
        let snapshot = try await Self.warmSnapshot(before)
        #expect(snapshot.entries.count == 1)
        let after = CacheFixture()  // a new process: same wall clock start
        after.clock.advance(by: .seconds(60))
        let summary = after.cache.restore(try CacheSnapshot(decoding: snapshot.encoded())) { _ in Self.same }
        #expect(summary.restored == 1 && summary.expired == 0)
        let served = try #require(after.cache.cachedToken(for: after.key()))
        #expect(served.token.value == snapshot.entries[0].token.value)
        #expect(served.expiresIn == .seconds(3540))
        #expect(after.fetcher.callCount == 0)
        // Due at half-life ±10 % of the original (1620…1980 s after issue), not at once.
        await after.cache.refreshDue()
        #expect(after.fetcher.callCount == 0)
        after.clock.advance(by: .seconds(1500))
        #expect(after.cache.cachedToken(for: after.key()) != nil)
        await after.cache.refreshDue()
        #expect(after.fetcher.callCount == 0)
        after.clock.advance(by: .seconds(500))
        await after.cache.refreshDue()
        #expect(after.fetcher.callCount == 1)
    }

    @Test func changedIdentityUnknownIdentityAndExpiredTokensStayOut() async throws {
        let snapshot = try await Self.warmSnapshot(CacheFixture())
        var renamed = snapshot
        renamed.entries[0].identity = "gone"
        let f = CacheFixture()
        #expect(f.cache.restore(snapshot) { _ in [9, 9, 9] }.identityChanged == 1)
        #expect(f.cache.restore(renamed) { _ in Self.same }.unknownIdentity == 1)
        let late = CacheFixture()
        late.clock.advance(by: .seconds(3600))
        #expect(late.cache.restore(snapshot) { _ in Self.same }.expired == 1)
        for cache in [f.cache, late.cache] { #expect(cache.count == 0) }
    }

    @Test func tokensOfIdentitiesRegisteredLaterWaitForThem() async throws {
        let snapshot = try await Self.warmSnapshot(CacheFixture())
        let clock = ManualClock()
        let fetcher = FakeFetcher(clock: clock)
        let cache = TokenCache(clock: clock, now: { clock.date }, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        clock.advance(by: .seconds(60))
        let summary = cache.restore(snapshot, fingerprint: { _ in Self.same }, deferring: { $0 == CacheFixture.identity })
        #expect(summary.deferred == 1 && summary.restored == 0 && cache.count == 0)
        #expect(cache.snapshot { _ in Self.same }.entries.count == 1, "kept aside, and stored again if the broker restarts before the pod asks")
        cache.register(identity: CacheFixture.identity, fetcher: fetcher)  // the pod asks
        let key = TokenKey(identity: CacheFixture.identity, scope: CacheFixture.storage)
        #expect(try await cache.token(for: key).token.value == snapshot.entries[0].token.value)
        #expect(fetcher.callCount == 0)
        #expect(cache.restore(snapshot, fingerprint: { _ in Self.same }).unknownIdentity == 0, "registered now")
    }

    @Test func overdueRefreshesAreSpreadNotImmediate() async throws {
        let snapshot = try await Self.warmSnapshot(CacheFixture())
        let f = CacheFixture()
        f.clock.advance(by: .seconds(2500))  // past the refresh time, 1100 s of validity left
        #expect(f.cache.restore(snapshot, fingerprint: { _ in Self.same }, overdueSpread: .seconds(60)).restored == 1)
        _ = f.cache.cachedToken(for: f.key())  // in use
        f.clock.advance(by: .seconds(61))
        await f.cache.refreshDue()
        #expect(f.fetcher.callCount == 1, "refreshed within the spread")
    }
}
