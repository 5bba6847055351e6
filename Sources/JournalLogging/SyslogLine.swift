/// A log entry as one line for a journal stream: the message, then its
/// metadata as key=value pairs, behind a `<N>` syslog priority prefix.
///
/// systemd-journald reads a `<N>` at the start of each line of a service's
/// standard output or error as that line's priority and strips it
/// (SyslogLevelPrefix=, on by default; sd-daemon(3)). It is what the
/// handler writes when the native socket cannot take an entry, so that the
/// priority survives even then.
public enum SyslogLine {
    /// "<4>translation fault device=00:03.0 iova=0x1000\n". Newlines in the
    /// message or a value become spaces: journald would cut the entry at
    /// each, and every later line would lose the priority.
    public static func format(priority: SyslogPriority, message: String, metadata: [(key: String, value: String)]) -> String {
        var line = "<\(priority.rawValue)>" + flatten(message)
        for (key, value) in metadata {
            line += " \(key)=\(flatten(value))"
        }
        return line + "\n"
    }

    private static func flatten(_ text: String) -> String {
        text.contains("\n") ? text.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: " ") : text
    }
}
