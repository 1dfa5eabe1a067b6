import CSystemd
import Glibc
public import Logging

/// A swift-log handler writing structured records to journald with
/// `sd_journal_sendv` (the variadic `sd_journal_send` cannot be called from Swift).
///
/// Each record has `MESSAGE`, `PRIORITY`, `CODE_FILE`/`CODE_LINE`/`CODE_FUNC`,
/// `SYSLOG_IDENTIFIER`, and one field per metadata key: the well-known keys get the
/// names in docs/operations.md (`token.identity` → `TOKENBROKER_IDENTITY`, …), any
/// other key is upper-cased with non-alphanumerics as `_`, prefixed `TOKENBROKER_` and cut at
/// 64 bytes (journald's field-name rules).
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let label: String

    /// Creates a handler for `label` (used as `SYSLOG_IDENTIFIER`).
    public init(label: String) {
        self.label = label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = [
            "MESSAGE=\(event.message)",
            "PRIORITY=\(Self.priority(event.level))",
            "CODE_FILE=\(event.file)",
            "CODE_LINE=\(event.line)",
            "CODE_FUNC=\(event.function)",
            "SYSLOG_IDENTIFIER=\(label)",
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            fields.append("\(Self.fieldName(key))=\(value)")
        }
        Self.send(fields)
    }

    /// Sends one record made of `NAME=value` fields.
    static func send(_ fields: [String]) {
        let buffers = fields.map { Array($0.utf8) }
        var pointers: [UnsafeMutableRawPointer] = []
        defer { pointers.forEach { free($0) } }
        var vectors: [iovec] = []
        for bytes in buffers {
            guard let memory = malloc(max(bytes.count, 1)) else { return }
            pointers.append(memory)
            bytes.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
            vectors.append(iovec(iov_base: memory, iov_len: bytes.count))
        }
        _ = vectors.withUnsafeBufferPointer { sd_journal_sendv($0.baseAddress, Int32($0.count)) }
    }

    /// Journal field name for a metadata key. journald drops, without a word, a field whose
    /// name is longer than 64 bytes, so a long key is cut there (the prefix keeps it valid otherwise).
    static func fieldName(_ key: String) -> String {
        if let known = knownFields[key] { return known }
        let cleaned = key.uppercased().map { ($0.isASCII && ($0.isLetter || $0.isNumber)) ? $0 : "_" }
        return String(("TOKENBROKER_" + String(cleaned)).prefix(64))
    }

    static let knownFields: [String: String] = [
        "token.identity": "TOKENBROKER_IDENTITY",
        "token.scope": "TOKENBROKER_SCOPE",
        "peer.uid": "PEER_UID",
        "peer.pid": "PEER_PID",
        "upstream.codes": "UPSTREAM_CODES",
        "upstream.trace_id": "TRACE_ID",
    ]

    /// syslog priorities, as journald expects.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Whether stderr is connected to the journal: `JOURNAL_STREAM` (`DEV:INODE`)
    /// names the device and inode of our stderr (systemd.exec(5)).
    public static func stderrIsJournal(environment: [String: String]) -> Bool {
        guard let stream = environment["JOURNAL_STREAM"] else { return false }
        let parts = stream.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }
}
