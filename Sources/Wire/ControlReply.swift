/// A control-socket reply as a client reads it (PROTOCOL.md §2.2).
public struct ControlReply: Sendable, Equatable {
    /// The request's id, echoed; nil when the reply carried none.
    public var id: JSONValue?
    /// `return` on success, `error` otherwise.
    public var result: Result<JSONValue, ControlError>

    public init(id: JSONValue?, result: Result<JSONValue, ControlError>) {
        self.id = id
        self.result = result
    }
}
