public import FoundationEssentials
import Glibc
import PlainJSON

/// base64url (RFC 4648 §5) without padding, as JWTs and JWKs use it (RFC 7515 §2): the one
/// codec of the broker and of the dev provider.
public enum Base64URL {
    /// Whether `decode` takes trailing `=` padding.
    public enum Padding: Sendable {
        /// Padding or none, as the broker reads assertions (lenient in what it accepts).
        case optional
        /// No `=` at all, as Entra reads a client assertion (the dev provider is strict like it).
        case forbidden
    }

    /// Decodes base64url text; nil when it is not base64url (or is padded where `padding` forbids it).
    public static func decode(_ text: some StringProtocol, padding: Padding = .optional) -> Data? {
        var base64 = String(text.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        guard !base64.contains("=") || (padding == .optional && base64.hasSuffix("=")) else { return nil }
        base64 = base64.trimmed { $0 == "=" }
        let remainder = base64.count % 4
        if remainder == 1 { return nil }
        if remainder > 0 { base64 += String(repeating: "=", count: 4 - remainder) }
        return Data(base64Encoded: base64)
    }

    /// Encodes bytes as unpadded base64url.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let bytes = Array(bytes)
        let count = encodedCount(bytes.count)
        return bytes.withUnsafeBytes { source in
            String(unsafeUninitializedCapacity: count) { target in
                encode(source, to: target.baseAddress!)
                return count
            }
        }
    }

    // MARK: Bytes to bytes (`TokenText`)

    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    /// Each character's 6-bit value; 0xFF for bytes outside the alphabet.
    private static let values: [UInt8] = {
        var values = [UInt8](repeating: 0xFF, count: 256)
        for (value, character) in alphabet.enumerated() { values[Int(character)] = UInt8(value) }
        return values
    }()

    /// How many characters `count` bytes encode to, without padding.
    static func encodedCount(_ count: Int) -> Int { count / 3 * 4 + (count % 3 == 0 ? 0 : count % 3 + 1) }

    /// Writes `bytes` encoded to `target`, which has room for `encodedCount(bytes.count)`.
    static func encode(_ bytes: UnsafeRawBufferPointer, to target: UnsafeMutablePointer<UInt8>) {
        alphabet.withUnsafeBufferPointer { alphabet in
            var (read, written) = (0, 0)
            func put(_ sextet: UInt32) {
                target[written] = alphabet[Int(sextet & 0x3F)]
                written += 1
            }
            while bytes.count - read >= 3 {
                let group = UInt32(bytes[read]) << 16 | UInt32(bytes[read + 1]) << 8 | UInt32(bytes[read + 2])
                put(group >> 18)
                put(group >> 12)
                put(group >> 6)
                put(group)
                read += 3
            }
            switch bytes.count - read {
            case 2:
                let group = UInt32(bytes[read]) << 16 | UInt32(bytes[read + 1]) << 8
                put(group >> 18)
                put(group >> 12)
                put(group >> 6)
            case 1:
                let group = UInt32(bytes[read]) << 16
                put(group >> 18)
                put(group >> 12)
            default: break
            }
        }
    }

    /// Appends what `text` decodes to onto `bytes` when `text` is exactly what `encode` writes
    /// for them (no padding, the unused low bits of the last character zero), so that encoding
    /// them again gives `text` back byte for byte; false otherwise (`bytes` then holds a part).
    static func decodeExactly(_ text: UnsafeRawBufferPointer, appendingTo bytes: inout [UInt8]) -> Bool {
        values.withUnsafeBufferPointer { values in
            var read = 0
            var group: UInt32 = 0
            while read < text.count {
                let value = values[Int(text[read])]
                guard value != 0xFF else { return false }
                group = group << 6 | UInt32(value)
                read += 1
                if read % 4 == 0 {
                    bytes.append(UInt8(truncatingIfNeeded: group >> 16))
                    bytes.append(UInt8(truncatingIfNeeded: group >> 8))
                    bytes.append(UInt8(truncatingIfNeeded: group))
                    group = 0
                }
            }
            switch text.count % 4 {
            case 0: return true
            case 2:  // 12 bits: one byte and 4 unused bits
                guard group & 0xF == 0 else { return false }
                bytes.append(UInt8(truncatingIfNeeded: group >> 4))
                return true
            case 3:  // 18 bits: two bytes and 2 unused bits
                guard group & 0x3 == 0 else { return false }
                bytes.append(UInt8(truncatingIfNeeded: group >> 10))
                bytes.append(UInt8(truncatingIfNeeded: group >> 2))
                return true
            default:
                return false  // one character left over encodes no byte
            }
        }
    }
}
