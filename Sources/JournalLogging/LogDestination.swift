import Glibc
import Posix

/// Where the process's standard error goes, as far as logging cares: to
/// the journal, or somewhere else (a terminal, a file, a pipe).
///
/// systemd.exec(7), $JOURNAL_STREAM: when a service's standard output or
/// error is connected to the journal, systemd sets JOURNAL_STREAM to the
/// device and inode numbers of that stream, "DEV:INODE" in decimal. A
/// program that finds them equal to its standard error's (fstat(2)) may
/// switch to the native journal protocol; when they differ, standard error
/// was redirected since (the variable was inherited by a child, or the
/// service ran with `2>file`) and the journal is not where it goes.
public enum LogDestination: Sendable, Equatable {
    /// Standard error is the journal's stream: send native entries.
    case journal
    /// Anything else: plain lines on standard error.
    case standardError

    /// The destination for this process: its JOURNAL_STREAM against fd 2.
    public static func detect() -> LogDestination {
        let stream = getenv("JOURNAL_STREAM").map { String(cString: $0) }
        var raw = stat()
        guard fstat(2, &raw) == 0 else { return .standardError }
        return detect(journalStream: stream, standardError: (device: UInt64(raw.st_dev), inode: UInt64(raw.st_ino)))
    }

    /// The decision itself, for a given JOURNAL_STREAM value and standard
    /// error's device and inode numbers.
    public static func detect(journalStream: String?, standardError: (device: UInt64, inode: UInt64)) -> LogDestination {
        guard let journalStream else { return .standardError }
        let parts = journalStream.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return .standardError }
        return device == standardError.device && inode == standardError.inode ? .journal : .standardError
    }
}
