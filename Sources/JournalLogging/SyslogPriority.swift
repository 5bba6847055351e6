import Logging

/// The syslog(3) priorities the journal's PRIORITY= field and the `<N>`
/// line prefix carry (RFC 5424 §6.2.1 severities; systemd.journal-fields(7)).
public enum SyslogPriority: Int, Sendable, CaseIterable {
    case emergency = 0
    case alert = 1
    case critical = 2
    case error = 3
    case warning = 4
    case notice = 5
    case info = 6
    case debug = 7

    /// swift-log's seven levels onto syslog's eight priorities. swift-log
    /// has nothing above critical, so emergency and alert are never used;
    /// trace has no syslog counterpart and shares debug, the lowest
    /// (`journalctl -p debug` shows both).
    public init(_ level: Logger.Level) {
        switch level {
        case .trace, .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .critical
        }
    }
}
