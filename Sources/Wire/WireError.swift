/// Why the event codec refused a frame or payload: the status the reply
/// carries (PROTOCOL.md §1.7) and a message for its `message` field (§1.4),
/// which says what was wrong, where (field, offset, index), and what to do.
public struct WireError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: EventStatus
    public var message: String

    public init(status: EventStatus, message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { "\(status.name): \(message)" }

    /// The reply that reports this error (no body; `EventCodec.encodeReply`
    /// adds the empty batch result that INVALIDATE and NOTIFY always carry).
    public var reply: EventReply { EventReply(status: status, message: message) }

    static func malformed(_ message: String) -> WireError { WireError(status: .malformed, message: message) }
}
