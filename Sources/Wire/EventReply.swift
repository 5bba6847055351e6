/// The type-specific part after a reply's status and message (PROTOCOL.md §1.4).
public enum ReplyBody: Sendable, Equatable {
    /// No body: every reply except the three below.
    case none
    /// `HELLO` with status 0 (§1.6).
    case hello(version: UInt32, maxPayload: UInt32, devices: UInt32)
    /// `INVALIDATE` and `NOTIFY`, whatever the status (§1.6).
    case batch(BatchResultBody)
}

/// A reply on the event channel (PROTOCOL.md §1.4): a status, a message that
/// is empty on success, and a body for the types that have one.
public struct EventReply: Sendable, Equatable {
    public var status: EventStatus
    public var message: String
    public var body: ReplyBody

    public init(status: EventStatus = .ok, message: String = "", body: ReplyBody = .none) {
        self.status = status
        self.message = message
        self.body = body
    }

    /// Status 0, no message, no body: `SET_*`, `RESET`, `READY`, `PING` done.
    public static let ok = EventReply()

    /// The `HELLO` success reply this daemon sends (§1.6).
    public static func helloAccepted(devices: UInt32) -> EventReply {
        EventReply(body: .hello(version: EventLimits.protocolVersion, maxPayload: UInt32(EventLimits.maxPayload), devices: devices))
    }
}
