import FoundationEssentials
import Glibc
import TokenExchange

// One entry of a `CacheSnapshot` payload, in order:
//
//     str16 identity · u8 length + fingerprint · str32 scope · str32 token · str16 token type
//     f64 issuedAt · f64 expiresAt · u8 flags (1 refresh_in, 2 ext_expires_in, 4 AWS, 8 account id)
//     [f64 token refreshAt] [f64 extendedExpiresAt]
//     [str16 access key id · str32 secret key · str32 session token · f64 expiration · [str16 account id]]
//     f64 scheduled refresh · f64 last requested
//
// strN: a uN byte length and UTF-8; f64: the bits of seconds since 1970 (exact round trip).

struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u16(_ value: UInt16) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func date(_ value: Date) { u64(value.timeIntervalSince1970.bitPattern) }

    /// A string with a 16-bit length; longer ones are cut (identity names and key ids are short).
    mutating func str16(_ value: String) {
        let utf8 = Array(value.utf8.prefix(Int(UInt16.max)))
        u16(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    mutating func str32(_ value: String) {
        u32(UInt32(value.utf8.count))
        bytes.append(contentsOf: value.utf8)
    }

    mutating func entry(_ entry: CacheSnapshot.Entry) {
        let token = entry.token
        str16(entry.identity)
        u8(UInt8(min(entry.fingerprint.count, 255)))
        bytes.append(contentsOf: entry.fingerprint.prefix(255))
        str32(entry.scope.value)
        str32(token.value)
        str16(token.tokenType)
        date(token.issuedAt)
        date(token.expiresAt)
        let aws = token.awsCredentials
        var flags: UInt8 = token.refreshAt == nil ? 0 : 1
        if token.extendedExpiresAt != nil { flags |= 2 }
        if aws != nil { flags |= 4 }
        if aws?.accountId != nil { flags |= 8 }
        u8(flags)
        if let refreshAt = token.refreshAt { date(refreshAt) }
        if let extended = token.extendedExpiresAt { date(extended) }
        if let aws {
            str16(aws.accessKeyId)
            str32(aws.secretAccessKey)
            str32(aws.sessionToken)
            date(aws.expiration)
            if let account = aws.accountId { str16(account) }
        }
        date(entry.refreshAt)
        date(entry.lastRequested)
    }
}

struct ByteReader {
    private let bytes: ArraySlice<UInt8>
    private var position: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.position = bytes.startIndex
    }

    var remaining: Int { bytes.endIndex - position }
    var isAtEnd: Bool { remaining == 0 }

    private mutating func take(_ count: Int) throws(CacheSnapshotError) -> ArraySlice<UInt8> {
        guard count <= remaining else {
            throw CacheSnapshotError(.truncated, "needed \(count) more bytes at offset \(position - bytes.startIndex), \(remaining) left")
        }
        defer { position += count }
        return bytes[position..<position + count]
    }

    private mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(CacheSnapshotError) -> T {
        try take(MemoryLayout<T>.size).reduce(T(0)) { $0 << 8 | T($1) }
    }

    mutating func u8() throws(CacheSnapshotError) -> UInt8 { try integer(UInt8.self) }
    mutating func u16() throws(CacheSnapshotError) -> UInt16 { try integer(UInt16.self) }
    mutating func u32() throws(CacheSnapshotError) -> UInt32 { try integer(UInt32.self) }

    mutating func date() throws(CacheSnapshotError) -> Date {
        let seconds = Double(bitPattern: try integer(UInt64.self))
        guard seconds.isFinite else { throw CacheSnapshotError(.malformed, "a time that is not a finite number") }
        return Date(timeIntervalSince1970: seconds)
    }

    private mutating func string(length: Int) throws(CacheSnapshotError) -> String {
        guard let text = String(validating: try take(length), as: UTF8.self) else {
            throw CacheSnapshotError(.malformed, "a string that is not UTF-8")
        }
        return text
    }

    mutating func str16() throws(CacheSnapshotError) -> String { try string(length: Int(try u16())) }
    mutating func str32() throws(CacheSnapshotError) -> String { try string(length: Int(try u32())) }

    mutating func entry() throws(CacheSnapshotError) -> CacheSnapshot.Entry {
        let identity = try str16()
        let fingerprint = Array(try take(Int(try u8())))
        let scope = Scope(try str32())
        let (value, tokenType) = (try str32(), try str16())
        let (issuedAt, expiresAt) = (try date(), try date())
        let flags = try u8()
        guard flags & ~0x0F == 0 else { throw CacheSnapshotError(.malformed, "unknown entry flags \(flags)") }
        let refreshAt = try flags & 1 != 0 ? date() : nil
        let extended = try flags & 2 != 0 ? date() : nil
        var aws: AWSCredentials?
        if flags & 4 != 0 {
            let (keyId, secret, session, expiration) = (try str16(), try str32(), try str32(), try date())
            let account = try flags & 8 != 0 ? str16() : nil
            aws = AWSCredentials(accessKeyId: keyId, secretAccessKey: secret, sessionToken: session, expiration: expiration, accountId: account)
        }
        let token = AccessToken(
            value: value, tokenType: tokenType, issuedAt: issuedAt, expiresAt: expiresAt, refreshAt: refreshAt, extendedExpiresAt: extended,
            awsCredentials: aws)
        return CacheSnapshot.Entry(
            identity: identity, fingerprint: fingerprint, scope: scope, token: token, refreshAt: try date(), lastRequested: try date())
    }
}
