/// Telling a reply of the event channel from one of the control socket, so
/// that a control client pointed at the wrong socket says which one it
/// reached instead of failing to parse a binary frame as JSON.
///
/// The event channel answers anything (our JSON line included: its first
/// 16 bytes read as a frame header) with a frame whose little-endian type
/// has bit 31 set (PROTOCOL.md §1.2: a reply's type is the request's type
/// with bit 31 set, and an unsolicited refusal is 0x8000_0000): the fourth
/// byte has its top bit set. A control reply is a JSON object whose first
/// four bytes are ASCII (`{"id`, `{"re`, `{"er`), and it is never shorter
/// than four bytes.
public enum EventChannelReply {
    public static let headBytes = 4

    public static func isFrame(_ head: [UInt8]) -> Bool {
        head.count >= headBytes && head[3] & 0x80 != 0
    }

    /// What to tell the user: that `path` is the event socket, and where the
    /// control socket usually is (next to it, as both defaults and the
    /// shipped config put them).
    public static func explanation(path: String) -> String {
        var text = "\(path) is vtdbridged's event socket (the VMM's binary channel, PROTOCOL.md §1), not its control socket"
        if let slash = path.lastIndex(of: "/") {
            text += "; the control socket is usually next to it, \(path[...slash])control.sock (--socket PATH, or --name NAME for /run/vtd-bridge/NAME/control.sock)"
        } else {
            text += "; use the control socket (--socket PATH, or --name NAME for /run/vtd-bridge/NAME/control.sock)"
        }
        return text
    }
}
