/// A log entry as one line for a journal stream, behind a `<N>` syslog
/// priority prefix.
///
/// systemd-journald reads a `<N>` at the start of each line of a service's
/// standard output or error as that line's priority and strips it
/// (SyslogLevelPrefix=, on by default; sd-daemon(3)). It is what the
/// handler writes when the native socket cannot take an entry, so that the
/// priority survives even then.
public enum SyslogLine {
    /// "<4>translation fault device=00:03.0 iova=0x1000\n". Newlines in
    /// `text` become spaces: journald would cut the entry at each, and
    /// every later line would lose the priority.
    public static func format(priority: SyslogPriority, text: String) -> String {
        let flat = text.contains("\n") ? text.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: " ") : text
        return "<\(priority.rawValue)>" + flat + "\n"
    }
}
