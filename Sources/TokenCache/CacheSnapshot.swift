public import FoundationEssentials
import Glibc
public import TokenExchange

/// The cache as bytes, for a warm restart through systemd's file-descriptor store
/// (docs/operations.md). Pure: `encoded()` and `init(decoding:)` turn values into bytes
/// and back; who stores the bytes, and where, is the app's business.
///
/// Layout (integers big-endian):
///
///     "TBCACHE\0"  magic, 8 bytes
///     u16          format version (1)
///     u32          payload length
///     u32          CRC-32 (IEEE) of the payload
///     payload      u32 entry count, then each entry (`CacheSnapshot+Entry`)
///
/// CRC-32 rather than SHA-256: the check guards against truncation and corruption, not
/// against a forger (a keyless hash would not stop one, and whoever can write the sealed
/// memfd can already read the tokens in it); CRC-32 catches every single-bit error and
/// every burst up to 32 bits, needs no dependency in the I/O-free core, and is 30 lines.
public struct CacheSnapshot: Sendable {
    /// The format version this build writes and reads.
    public static let version: UInt16 = 1
    static let magic: [UInt8] = Array("TBCACHE\0".utf8)
    static let headerSize = 8 + 2 + 4 + 4

    /// The cached tokens.
    public var entries: [Entry]

    /// A snapshot of `entries`.
    public init(entries: [Entry]) {
        self.entries = entries
    }

    /// One cached token with what the cache needs to keep serving and refreshing it.
    public struct Entry: Sendable {
        /// The identity's name.
        public var identity: String
        /// A digest of the identity's configuration (source and exchange) when the token
        /// was obtained: a token is restored only into an identity configured the same way.
        public var fingerprint: [UInt8]
        /// The scope it is cached under.
        public var scope: Scope
        /// The token with its times.
        public var token: AccessToken
        /// When the cache planned to refresh it (wall clock).
        public var refreshAt: Date
        /// When a caller last asked for it (wall clock): refreshes stay limited to scopes in use.
        public var lastRequested: Date

        /// Creates an entry.
        public init(identity: String, fingerprint: [UInt8], scope: Scope, token: AccessToken, refreshAt: Date, lastRequested: Date) {
            self.identity = identity
            self.fingerprint = fingerprint
            self.scope = scope
            self.token = token
            self.refreshAt = refreshAt
            self.lastRequested = lastRequested
        }
    }

    /// The bytes: header, checksum, payload.
    public func encoded() -> [UInt8] {
        var payload = ByteWriter()
        payload.u32(UInt32(entries.count))
        for entry in entries { payload.entry(entry) }
        var header = ByteWriter()
        header.bytes.append(contentsOf: Self.magic)
        header.u16(Self.version)
        header.u32(UInt32(payload.bytes.count))
        header.u32(CRC32.checksum(payload.bytes))
        return header.bytes + payload.bytes
    }

    /// Reads `bytes` written by `encoded()`; throws, naming what is wrong, for anything else.
    public init(decoding bytes: [UInt8]) throws(CacheSnapshotError) {
        guard bytes.count >= Self.headerSize else {
            throw CacheSnapshotError(.truncated, "\(bytes.count) bytes, shorter than the \(Self.headerSize)-byte header")
        }
        guard Array(bytes[0..<8]) == Self.magic else { throw CacheSnapshotError(.badMagic, "the first 8 bytes are not TBCACHE\\0") }
        var header = ByteReader(bytes[8..<Self.headerSize])
        let version = try header.u16(), length = Int(try header.u32()), checksum = try header.u32()
        guard version == Self.version else {
            throw CacheSnapshotError(.unsupportedVersion, "format version \(version); this build reads version \(Self.version)")
        }
        let payload = bytes[Self.headerSize...]
        guard payload.count == length else {
            throw CacheSnapshotError(payload.count < length ? .truncated : .malformed, "payload is \(payload.count) bytes, the header says \(length)")
        }
        guard CRC32.checksum(payload) == checksum else {
            throw CacheSnapshotError(.checksumMismatch, "CRC-32 of the payload does not match the header")
        }
        var reader = ByteReader(payload)
        let count = Int(try reader.u32())
        var entries: [Entry] = []
        entries.reserveCapacity(min(count, payload.count / 64))
        for _ in 0..<count { entries.append(try reader.entry()) }
        guard reader.isAtEnd else { throw CacheSnapshotError(.malformed, "\(reader.remaining) bytes after the last entry") }
        self.entries = entries
    }
}

/// Why a snapshot could not be read.
public struct CacheSnapshotError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable codes, usable as log fields.
    public enum Code: String, Sendable {
        case truncated, badMagic = "bad_magic", unsupportedVersion = "unsupported_version", checksumMismatch = "checksum_mismatch", malformed
    }
    /// What kind of problem.
    public let code: Code
    /// What exactly (never any token bytes).
    public let message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// CRC-32 with the IEEE polynomial (as zlib and Ethernet), table-driven.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}
