/// One configuration problem, precise enough to fix without reading the
/// source: which key, where its value came from, what is wrong with it, and
/// what is expected instead.
///
/// `description` reads, for example:
///
///     config key "log.level" (from VTDBRIDGE_LOG_LEVEL): "loud" is not a log level; expected one of trace, debug, info, notice, warning, error, critical
///
/// An error about the config file as a whole (missing, unreadable, not JSON)
/// has an empty `key`, and its `source` is the file:
///
///     config file /etc/vtd-bridge/vm0.json: not valid JSON at line 3, column 7: expected "," or "}" after an object member
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The config key ("log.level"), or for an unknown environment variable
    /// its name; empty for an error about the file as a whole.
    public var key: String
    /// What is wrong and what is expected.
    public var message: String
    /// Where the value came from: a file path (with its line when known), an
    /// environment variable name, a command-line flag, or "default".
    public var source: String?

    public init(key: String, message: String, source: String? = nil) {
        self.key = key
        self.message = message
        self.source = source
    }

    public var description: String {
        if key.isEmpty {
            return "config file \(source ?? "?"): \(message)"
        }
        if let source {
            return "config key \"\(key)\" (from \(source)): \(message)"
        }
        return "config key \"\(key)\": \(message)"
    }
}
