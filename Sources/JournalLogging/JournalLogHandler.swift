import Logging
import Posix

/// A swift-log handler that writes to the systemd journal in its native
/// protocol, so that each entry keeps its priority and its metadata as
/// fields of their own (`journalctl -p warning`, `journalctl DEVICE=00:03.0`,
/// `journalctl -o json`).
///
/// Each entry carries MESSAGE=, PRIORITY= (SyslogPriority), SYSLOG_IDENTIFIER=,
/// CODE_FILE=, CODE_LINE=, CODE_FUNC= (systemd.journal-fields(7)), LOGGER=
/// (the logger's label), ERROR= when the event has one, and one field per
/// metadata key (JournalFieldName: "fault-reason" → FAULT_REASON=).
/// MESSAGE= is the message followed by the metadata as key=value pairs,
/// as a line on standard error would have them: `journalctl` without
/// `-o json` shows only MESSAGE=, and "attached" alone would not say which
/// device.
///
/// An entry the socket does not take (no journald at its path, its queue
/// full, too large for a datagram) goes to `fallback`, by default standard
/// error, as one `<N>`-prefixed line (SyslogLine): under systemd that is the
/// journal's stream, which still reads the priority. Use this handler only
/// when LogDestination.detect() says .journal; otherwise plain lines suit a
/// person better.
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    public let label: String
    /// SYSLOG_IDENTIFIER=: the program's name, what `journalctl -t` selects.
    public let identifier: String
    private let socket: JournalSocket?
    private let fallback: @Sendable (String) -> Void

    /// The fields this handler sets itself; a metadata key that would take
    /// one of these names is sent as METADATA_<name> instead, so that it can
    /// neither replace the message nor forge a second priority. (ERROR= is
    /// not one: the daemon's "error" metadata is that field, and an event's
    /// own error, when it has one too, is a second ERROR= value, which the
    /// journal allows.)
    static let ownFields: Set<String> = ["MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "LOGGER"]

    /// `socket` nil: the socket could not be made; every entry goes to
    /// `fallback`.
    public init(label: String, identifier: String, socket: JournalSocket?,
                metadataProvider: Logger.MetadataProvider? = nil,
                fallback: @escaping @Sendable (String) -> Void = { FileHandleStderr.write($0) }) {
        self.label = label
        self.identifier = identifier
        self.socket = socket
        self.metadataProvider = metadataProvider
        self.fallback = fallback
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let pairs = mergedMetadata(event.metadata)
        let entry = entry(for: event, metadata: pairs)
        if let socket {
            do {
                try socket.send(entry)
                return
            } catch {
                // Below: the stream still carries the priority.
            }
        }
        fallback(SyslogLine.format(priority: SyslogPriority(event.level), text: entry["MESSAGE"] ?? ""))
    }

    /// The entry for `event`, with `metadata` as merged by `mergedMetadata`.
    func entry(for event: LogEvent, metadata pairs: [(key: String, value: String)]) -> JournalEntry {
        var entry = JournalEntry()
        entry.append("MESSAGE", Self.messageText("\(event.message)", pairs))
        entry.append("PRIORITY", "\(SyslogPriority(event.level).rawValue)")
        entry.append("SYSLOG_IDENTIFIER", identifier)
        entry.append("CODE_FILE", event.file)
        entry.append("CODE_LINE", "\(event.line)")
        entry.append("CODE_FUNC", event.function)
        entry.append("LOGGER", label)
        if let error = event.error { entry.append("ERROR", "\(error)") }
        for (key, value) in pairs {
            guard let name = JournalFieldName.sanitize(key) else { continue }
            let field = Self.ownFields.contains(name) ? String(("METADATA_" + name).prefix(JournalFieldName.maximumLength)) : name
            entry.append(field, value)
        }
        return entry
    }

    /// "attached device=00:03.0 host=0000:01:00.0"
    static func messageText(_ message: String, _ pairs: [(key: String, value: String)]) -> String {
        pairs.reduce(message) { $0 + " \($1.key)=\($1.value)" }
    }

    /// The handler's metadata, then the provider's, then the event's, a
    /// later one replacing an earlier one of the same key; sorted by key so
    /// that an entry's fields come in a stable order.
    func mergedMetadata(_ eventMetadata: Logger.Metadata?) -> [(key: String, value: String)] {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let eventMetadata { merged.merge(eventMetadata) { _, new in new } }
        return merged.sorted { $0.key < $1.key }.map { (key: $0.key, value: "\($0.value)") }
    }
}
