import JSON

/// What one reload of the configuration did (SIGHUP, the unit's
/// ExecReload): logged, sent to systemd, and shown by `status` as
/// "last-reload" until the next one.
struct ConfigReload: Sendable, Equatable {
    enum Outcome: String, Sendable {
        /// The file was valid: every change that can be made without a
        /// restart was made (device attaches may still have failed: they
        /// are in `failures` and retried like at start).
        case applied
        /// The file was not valid: nothing changed, the running
        /// configuration is kept.
        case refused
    }

    var outcome: Outcome
    /// Wall-clock time of the reload, nanoseconds since the epoch.
    var atNanoseconds: Int64
    /// What changed, one entry per setting or device: "log.level: info → debug",
    /// "devices: attached 00:04.0 (0000:02:00.0)".
    var changes: [String] = []
    /// Keys that differ in the file but only take effect at the next start
    /// (DaemonConfig.restartOnlyKeys); their running values are kept.
    var needsRestart: [String] = []
    /// Changes that were asked for and could not be made.
    var failures: [String] = []
    /// Why the configuration was refused.
    var error: String?

    /// One line for the journal and for STATUS=.
    var summary: String {
        switch outcome {
        case .refused:
            return "reload refused, the running configuration is kept: \(error ?? "unknown error")"
        case .applied:
            var parts: [String] = [changes.isEmpty ? "no change" : changes.joined(separator: "; ")]
            if !needsRestart.isEmpty { parts.append("needs a restart (kept as running): \(needsRestart.joined(separator: ", "))") }
            if !failures.isEmpty { parts.append("failed: \(failures.joined(separator: "; "))") }
            return "reloaded: " + parts.joined(separator: "; ")
        }
    }

    var json: JSONValue {
        .object([
            "outcome": .string(outcome.rawValue),
            "time-ns": .int(atNanoseconds),
            "changes": .array(changes.map { .string($0) }),
            "needs-restart": .array(needsRestart.map { .string($0) }),
            "failures": .array(failures.map { .string($0) }),
            "error": error.map { .string($0) } ?? .null,
        ])
    }
}
