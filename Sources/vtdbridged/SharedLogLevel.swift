import Daemon
import Logging
import Synchronization

/// The process-wide log level: every logger's handler reads it, so the
/// control socket's log-level command, and a reload that changes
/// log.level, change them all at once.
final class SharedLogLevel: LogLevelControl {
    private let storage: Mutex<Logger.Level>
    init(_ level: Logger.Level) { storage = Mutex(level) }
    var level: Logger.Level { storage.withLock { $0 } }
    func setLevel(_ level: Logger.Level) { storage.withLock { $0 = level } }
}
