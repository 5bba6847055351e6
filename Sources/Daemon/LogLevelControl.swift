import Logging

/// The daemon's handle on the process's log level. Only the executable
/// bootstraps logging, so it provides this; the `log-level` control command
/// goes through it.
public protocol LogLevelControl: Sendable {
    var level: Logger.Level { get }
    func setLevel(_ level: Logger.Level)
}
