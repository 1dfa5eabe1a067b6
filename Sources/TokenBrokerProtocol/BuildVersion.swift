internal import CBuildInfo

/// The version both binaries print with `--version`: the package's version when built by
/// scripts/package, else VERSION with the checkout's commit (`0.6.0+git.1a2b3c4d5e6f`).
public enum BuildVersion {
    public static let text = String(cString: tokenbroker_build_version())
}
