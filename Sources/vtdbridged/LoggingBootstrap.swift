import JournalLogging
import Logging

/// How the daemon's log lines leave the process: the only place that picks
/// a log handler (libraries only ever hold a Logger).
///
/// Under systemd, with standard error connected to the journal
/// (LogDestination, JOURNAL_STREAM), entries go to journald's native socket
/// with their priority and metadata as fields; an entry the socket does not
/// take is written to standard error as a `<N>`-prefixed line, which the
/// journal reads the priority of. Anywhere else (a terminal, a file, the
/// tests' harness): swift-log's plain stream lines on standard error.
enum LoggingBootstrap {
    static let identifier = "vtdbridged"

    static func bootstrap(level: SharedLogLevel, destination: LogDestination = .detect()) {
        switch destination {
        case .journal:
            // One socket for every logger; nil if it cannot even be made
            // (then every entry takes the `<N>` line).
            let socket = try? JournalSocket()
            LoggingSystem.bootstrap { label in
                SharedLevelLogHandler(inner: JournalLogHandler(label: label, identifier: identifier, socket: socket), level: level)
            }
        case .standardError:
            LoggingSystem.bootstrap { label in
                SharedLevelLogHandler(inner: StreamLogHandler.standardError(label: label), level: level)
            }
        }
    }

    /// A line for standard error before logging is set up (a config error):
    /// with the `<3>` (error) prefix when the journal reads it.
    static func errorLine(_ text: String, destination: LogDestination = .detect()) -> String {
        destination == .journal ? "<3>vtdbridged: \(text)\n" : "vtdbridged: \(text)\n"
    }
}
