import CBuildInfo

/// What `--version` prints on every executable: the release and the commit
/// it was built from, so that a bug report names the exact code.
public enum BuildInfo {
    /// The release, as the daemon also reports it in `status`.
    public static let version = "0.1.0"

    /// The commit (`git describe --always --dirty --abbrev=12`), or
    /// "unknown" when the build did not go through `make`.
    public static var commit: String { String(cString: vtd_build_commit()) }

    /// "vtdbridgectl 0.1.0 (git 6371bc8d21f4)": ArgumentParser prints a
    /// command's `version` as is.
    public static func versionLine(program: String) -> String {
        "\(program) \(version) (git \(commit))"
    }
}
