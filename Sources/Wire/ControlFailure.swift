/// A request that failed its envelope checks (PROTOCOL.md §2.2), with the id
/// to echo when it could be read, so the error reply still matches up.
public struct ControlFailure: Error, Sendable, Equatable {
    public var id: JSONValue?
    public var error: ControlError

    public init(id: JSONValue?, error: ControlError) {
        self.id = id
        self.error = error
    }
}
