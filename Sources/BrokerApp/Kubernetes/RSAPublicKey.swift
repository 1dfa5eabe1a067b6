/// An RSA public key that checks RS256 signatures (RSASSA-PKCS1-v1_5 with SHA-256, RFC 8017),
/// in plain Swift: node mode checks that a pod's service-account token was signed by the
/// cluster, and the daemon carries no crypto library of its own for it (swift-crypto would
/// bring a second BoringSSL, see `SHA256Digest`). Only public values are involved, so
/// nothing here needs to be constant-time.
///
/// The check computes `signature^e mod n` with Montgomery multiplication and compares the
/// result with the one encoding of the digest the standard allows, byte for byte (no
/// parsing of the decrypted block, whose lenient parsers were the classic forgery).
struct RSAPublicKey: Sendable {
    /// The modulus, 64-bit limbs, least significant first.
    private let modulus: [UInt64]
    /// Its length in bytes (the signature's length).
    let byteCount: Int
    private let exponent: UInt64
    /// -modulus⁻¹ mod 2⁶⁴.
    private let inverse: UInt64
    /// R² mod modulus, R = 2^(64 · limbs): brings a number into Montgomery form.
    private let rSquared: [UInt64]

    /// The DER `DigestInfo` prefix of a SHA-256 digest (RFC 8017, 9.2 note 1).
    private static let sha256Prefix: [UInt8] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
    ]

    /// The key with big-endian `modulus` and `exponent` (a JWK's `n` and `e`); nil unless
    /// the modulus is odd and 2048 to 8192 bits and the exponent odd, above 1 and below 2⁶⁴.
    init?(modulus bigEndian: [UInt8], exponent exponentBytes: [UInt8]) {
        let significant = Array(bigEndian.drop { $0 == 0 })
        guard (256...1024).contains(significant.count), significant.last.map({ $0 & 1 == 1 }) == true else { return nil }
        let exponentSignificant = exponentBytes.drop { $0 == 0 }
        guard (1...8).contains(exponentSignificant.count) else { return nil }
        let exponent = exponentSignificant.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard exponent > 1, exponent & 1 == 1 else { return nil }
        let modulus = Self.limbs(significant, count: (significant.count + 7) / 8)
        self.modulus = modulus
        self.byteCount = significant.count
        self.exponent = exponent
        // Newton's iteration doubles the correct low bits each step: 1 → 64 in six steps.
        var inverse: UInt64 = 1
        for _ in 0..<6 { inverse = inverse &* (2 &- modulus[0] &* inverse) }
        self.inverse = 0 &- inverse
        // R² mod n by doubling 1 (2 · 64 · limbs times), subtracting n whenever it is exceeded.
        var value = [UInt64](repeating: 0, count: modulus.count)
        value[0] = 1
        for _ in 0..<(2 * 64 * modulus.count) {
            let carry = Self.shiftLeftOne(&value)
            if carry || !Self.isLess(value, modulus) { Self.subtract(&value, modulus) }
        }
        self.rSquared = value
    }

    /// Whether `signature` is this key's RS256 signature of `message`.
    func verifiesRS256(signature: [UInt8], message: some Sequence<UInt8>) -> Bool {
        guard signature.count == byteCount else { return false }
        let signed = Self.limbs(signature, count: modulus.count)
        guard Self.isLess(signed, modulus) else { return false }
        return power(signed) == Self.encoded(SHA256Digest.hash(message), length: byteCount)
    }

    /// `base^exponent mod n`, big-endian in `byteCount` bytes.
    private func power(_ base: [UInt64]) -> [UInt8] {
        let montgomeryBase = multiply(base, rSquared)
        var result = montgomeryBase
        let bits = 64 - exponent.leadingZeroBitCount
        for bit in stride(from: bits - 2, through: 0, by: -1) {
            result = multiply(result, result)
            if exponent >> UInt64(bit) & 1 == 1 { result = multiply(result, montgomeryBase) }
        }
        var one = [UInt64](repeating: 0, count: modulus.count)
        one[0] = 1
        result = multiply(result, one)  // out of Montgomery form
        var bytes = [UInt8](repeating: 0, count: byteCount)
        for index in 0..<byteCount {
            let limb = result[index / 8]
            bytes[byteCount - 1 - index] = UInt8(truncatingIfNeeded: limb >> UInt64(8 * (index % 8)))
        }
        return bytes
    }

    /// Montgomery product a · b · R⁻¹ mod n (CIOS; a, b < n).
    private func multiply(_ a: [UInt64], _ b: [UInt64]) -> [UInt64] {
        let count = modulus.count
        var t = [UInt64](repeating: 0, count: count + 2)
        for i in 0..<count {
            var carry: UInt64 = 0
            for j in 0..<count {
                (carry, t[j]) = Self.multiplyAdd(a[j], b[i], t[j], carry)
            }
            var (sum, overflow) = t[count].addingReportingOverflow(carry)
            t[count] = sum
            t[count + 1] = overflow ? 1 : 0
            let m = t[0] &* inverse
            (carry, _) = Self.multiplyAdd(m, modulus[0], t[0], 0)
            for j in 1..<count {
                (carry, t[j - 1]) = Self.multiplyAdd(m, modulus[j], t[j], carry)
            }
            (sum, overflow) = t[count].addingReportingOverflow(carry)
            t[count - 1] = sum
            t[count] = t[count + 1] &+ (overflow ? 1 : 0)
        }
        var result = Array(t[0..<count])
        if t[count] != 0 || !Self.isLess(result, modulus) { Self.subtract(&result, modulus) }
        return result
    }

    /// x · y + a + b as (high, low): never overflows 128 bits.
    private static func multiplyAdd(_ x: UInt64, _ y: UInt64, _ a: UInt64, _ b: UInt64) -> (UInt64, UInt64) {
        var (high, low) = x.multipliedFullWidth(by: y)
        var overflow: Bool
        (low, overflow) = low.addingReportingOverflow(a)
        if overflow { high &+= 1 }
        (low, overflow) = low.addingReportingOverflow(b)
        if overflow { high &+= 1 }
        return (high, low)
    }

    /// EMSA-PKCS1-v1_5: 00 01 FF…FF 00, the DigestInfo prefix, the digest.
    private static func encoded(_ digest: [UInt8], length: Int) -> [UInt8] {
        let tail = sha256Prefix + digest
        return [0x00, 0x01] + [UInt8](repeating: 0xff, count: length - tail.count - 3) + [0x00] + tail
    }

    /// Big-endian bytes as `count` little-endian limbs (bytes beyond them are dropped: the
    /// callers' bytes fit).
    private static func limbs(_ bytes: [UInt8], count: Int) -> [UInt64] {
        var limbs = [UInt64](repeating: 0, count: count)
        for (index, byte) in bytes.reversed().enumerated() where index / 8 < count {
            limbs[index / 8] |= UInt64(byte) << UInt64(8 * (index % 8))
        }
        return limbs
    }

    private static func isLess(_ a: [UInt64], _ b: [UInt64]) -> Bool {
        for index in stride(from: a.count - 1, through: 0, by: -1) where a[index] != b[index] {
            return a[index] < b[index]
        }
        return false
    }

    /// a -= b, modulo 2^(64 · limbs).
    private static func subtract(_ a: inout [UInt64], _ b: [UInt64]) {
        var borrow = false
        for index in a.indices {
            let (first, overflowFirst) = a[index].subtractingReportingOverflow(b[index])
            let (second, overflowSecond) = first.subtractingReportingOverflow(borrow ? 1 : 0)
            a[index] = second
            borrow = overflowFirst || overflowSecond
        }
    }

    /// a <<= 1; returns the bit shifted out.
    private static func shiftLeftOne(_ a: inout [UInt64]) -> Bool {
        var carry: UInt64 = 0
        for index in a.indices {
            let next = a[index] >> 63
            a[index] = a[index] << 1 | carry
            carry = next
        }
        return carry == 1
    }
}
