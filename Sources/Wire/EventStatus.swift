/// Reply status codes of the event channel (PROTOCOL.md §1.7).
public enum EventStatus: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case ok = 0
    case malformed = 1
    case unknownType = 2
    case badState = 3
    case version = 4
    case capability = 5
    case fds = 6
    case memory = 7
    case partial = 8
    case descriptor = 9
    case tooLarge = 10
    case `internal` = 11
    case shuttingDown = 12
    case memoryLost = 13

    /// The name the protocol document uses (§1.7).
    public var name: String {
        switch self {
        case .ok: "OK"
        case .malformed: "MALFORMED"
        case .unknownType: "UNKNOWN_TYPE"
        case .badState: "BAD_STATE"
        case .version: "VERSION"
        case .capability: "CAPABILITY"
        case .fds: "FDS"
        case .memory: "MEMORY"
        case .partial: "PARTIAL"
        case .descriptor: "DESCRIPTOR"
        case .tooLarge: "TOO_LARGE"
        case .internal: "INTERNAL"
        case .shuttingDown: "SHUTTING_DOWN"
        case .memoryLost: "MEMORY_LOST"
        }
    }

    /// Whether the daemon closes the connection after a reply with this
    /// status (§1.7 "connection" column). `BAD_STATE` also closes when it
    /// answers a second VMM; that is the session's decision, not the code's.
    public var closesConnection: Bool { self == .tooLarge || self == .shuttingDown }
    public var description: String { name }
}
