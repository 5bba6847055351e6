/// Turns a swift-log metadata key into a journal field name.
///
/// systemd.journal-fields(7) and sd_journal_print(3): a field name is made
/// of upper-case letters, digits and underscores, does not start with a
/// digit, and at most 64 characters long. A leading underscore marks a
/// trusted field that only journald itself may set; journald drops such a
/// field from a client, so leading underscores are removed rather than kept.
public enum JournalFieldName {
    /// The longest field name journald accepts.
    public static let maximumLength = 64

    /// `key` upper-cased with every character outside [A-Z0-9_] replaced by
    /// "_": "fault-reason" → "FAULT_REASON", "event.socket" →
    /// "EVENT_SOCKET". Leading underscores are dropped; a name that would
    /// start with a digit gets "F_" in front ("2nd" → "F_2ND"). Cut to 64
    /// characters. nil when nothing is left (a key of only underscores, or
    /// an empty key).
    public static func sanitize(_ key: String) -> String? {
        var name: [UInt8] = []
        name.reserveCapacity(key.utf8.count)
        for scalar in key.unicodeScalars {
            switch scalar.value {
            case 0x41...0x5A, 0x30...0x39, 0x5F: name.append(UInt8(scalar.value))
            case 0x61...0x7A: name.append(UInt8(scalar.value - 0x20))
            default: name.append(0x5F)
            }
        }
        while name.first == 0x5F { name.removeFirst() }
        guard let first = name.first else { return nil }
        if (0x30...0x39).contains(first) { name.insert(contentsOf: Array("F_".utf8), at: 0) }
        return String(decoding: name.prefix(maximumLength), as: UTF8.self)
    }
}
