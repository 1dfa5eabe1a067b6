import FoundationEssentials
import Glibc

/// Whoever can change the configuration file can grant themselves any identity, so the
/// daemon warns when someone besides root and itself could.
public enum ConfigurationFileSafety {
    /// One problem with the file's owner or mode.
    public struct Warning: Sendable, Equatable, CustomStringConvertible {
        /// The file.
        public var path: String
        /// Its permission bits.
        public var mode: UInt32
        /// Its owner.
        public var owner: UInt32
        /// What is wrong, naming the file and its mode.
        public var message: String

        public var description: String { message }
    }

    /// Problems with the file at `path`: writable by group or others, or owned by a user
    /// other than root and `daemonUID` (default: this process's effective uid). Empty when
    /// the file is fine or cannot be examined (reading it reports that). A symlink (a
    /// ConfigMap volume's `config.yaml`) is judged by the file it names, as that is what is read.
    public static func warnings(path: String, daemonUID: UInt32? = nil) -> [Warning] {
        let daemonUID = daemonUID ?? geteuid()
        let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        // stat(2) on the resolved path (FileManager's attributes were NSNumbers, which
        // FoundationEssentials does not have).
        var info = stat()
        guard stat(target, &info) == 0 else { return [] }
        let permissions = UInt32(info.st_mode)
        let ownerID = UInt32(info.st_uid)
        let mode = permissions & 0o7777
        let modeText = (target == path ? "" : "→ \(target), ") + "mode 0" + String(mode, radix: 8)
        var warnings: [Warning] = []
        let writers = [(0o020, "its group"), (0o002, "every user")].filter { mode & UInt32($0.0) != 0 }.map(\.1)
        if !writers.isEmpty {
            warnings.append(
                Warning(
                    path: path, mode: mode, owner: ownerID,
                    message:
                        "configuration file \(path) (\(modeText)) is writable by \(writers.joined(separator: " and ")): whoever can change it can grant themselves any identity; chmod go-w \(path)"
                ))
        }
        if ownerID != 0 && ownerID != daemonUID {
            warnings.append(
                Warning(
                    path: path, mode: mode, owner: ownerID,
                    message:
                        "configuration file \(path) (\(modeText)) is owned by uid \(ownerID), not root or the daemon's user (uid \(daemonUID)): its owner can grant themselves any identity; chown root \(path)"
                ))
        }
        return warnings
    }
}
