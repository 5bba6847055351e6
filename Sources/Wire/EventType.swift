/// The request types of the event channel (PROTOCOL.md §1.6).
///
/// A reply carries the request's type with `replyBit` set (§1.2), also when the
/// request's type was unknown — so reply types are plain `UInt32`s, not cases.
public enum EventType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case hello = 1
    case setMemTable = 2
    case setRootTable = 3
    case setTranslation = 4
    case reset = 5
    case ready = 6
    case invalidate = 7
    case notify = 8
    case ping = 9

    /// Bit 31: set in every reply's `type` (§1.2).
    public static let replyBit: UInt32 = 0x8000_0000

    /// The reply type for a request of raw type `requestType` (§1.2).
    public static func replyType(for requestType: UInt32) -> UInt32 { requestType | replyBit }

    /// The name the protocol document uses, for messages and logs.
    public var name: String {
        switch self {
        case .hello: "HELLO"
        case .setMemTable: "SET_MEM_TABLE"
        case .setRootTable: "SET_ROOT_TABLE"
        case .setTranslation: "SET_TRANSLATION"
        case .reset: "RESET"
        case .ready: "READY"
        case .invalidate: "INVALIDATE"
        case .notify: "NOTIFY"
        case .ping: "PING"
        }
    }

    public var description: String { name }

    /// A readable name for any raw type, known or not, with or without the reply bit.
    public static func describe(_ rawType: UInt32) -> String {
        let isReply = rawType & replyBit != 0
        let base = rawType & ~replyBit
        let name = EventType(rawValue: base)?.name ?? "type \(base)"
        return isReply ? "reply to \(name)" : name
    }
}
