/// A control-socket request (PROTOCOL.md §2.2) that has passed the envelope
/// checks of `ControlCodec.parseRequest`: `command` is one of the known
/// commands, `arguments` an object. Commands read their arguments through
/// the typed accessors, which throw errors that name the argument.
///
/// An argument given as JSON `null` counts as absent.
public struct ControlRequest: Sendable, Equatable {
    /// Echoed in the reply; nil when the request had none (`.null` when it
    /// was an explicit null, which is echoed as null).
    public var id: JSONValue?
    /// Known by construction: the daemon switches over it exhaustively, so a
    /// command added to `ControlCommand` without a handler does not compile.
    public var command: ControlCommand
    public var arguments: [String: JSONValue]

    public init(id: JSONValue? = nil, command: ControlCommand, arguments: [String: JSONValue] = [:]) {
        self.id = id
        self.command = command
        self.arguments = arguments
    }

    private func present(_ name: String) -> JSONValue? {
        guard let value = arguments[name], !value.isNull else { return nil }
        return value
    }

    /// A string argument, nil when absent.
    public func string(_ name: String) throws(ControlError) -> String? {
        guard let value = present(name) else { return nil }
        guard let text = value.stringValue else { throw .invalidArgument(name, "must be a string, got \(value.kindDescription)") }
        return text
    }

    public func requiredString(_ name: String) throws(ControlError) -> String {
        guard let text = try string(name) else { throw .missingArgument(name) }
        return text
    }

    /// An integer argument, nil when absent. Refuses non-integers (also 1.0:
    /// JSON `1.0` is not an integer here) and values outside `range`.
    public func int(_ name: String, in range: ClosedRange<Int> = Int.min ... Int.max) throws(ControlError) -> Int? {
        guard let value = present(name) else { return nil }
        guard value.isInteger else { throw .invalidArgument(name, "must be an integer, got \(value.kindDescription) \(value.serialized)") }
        guard let number = value.intValue, range.contains(number) else {
            let bounds = range == Int.min ... Int.max ? "a 64-bit integer" : "\(range.lowerBound) to \(range.upperBound)"
            throw .invalidArgument(name, "is \(value.serialized), out of range; it must be \(bounds)")
        }
        return number
    }

    public func requiredInt(_ name: String, in range: ClosedRange<Int> = Int.min ... Int.max) throws(ControlError) -> Int {
        guard let number = try int(name, in: range) else { throw .missingArgument(name) }
        return number
    }

    /// A boolean argument, nil when absent.
    public func bool(_ name: String) throws(ControlError) -> Bool? {
        guard let value = present(name) else { return nil }
        guard let flag = value.boolValue else { throw .invalidArgument(name, "must be true or false, got \(value.kindDescription)") }
        return flag
    }

    public func requiredBool(_ name: String) throws(ControlError) -> Bool {
        guard let flag = try bool(name) else { throw .missingArgument(name) }
        return flag
    }

    /// Refuses argument names outside `names`, so that a misspelt optional
    /// argument is reported rather than silently ignored. Names the first
    /// unknown one in sorted order, so the message is deterministic.
    public func allowOnly(_ names: Set<String>) throws(ControlError) {
        let unknown = arguments.keys.filter { !names.contains($0) }.sorted()
        guard let first = unknown.first else { return }
        let allowed = names.isEmpty ? "it takes no arguments" : "it takes \(names.sorted().joined(separator: ", "))"
        throw .invalidArgument(first, "is not an argument of \(command.rawValue); \(allowed)")
    }
}
