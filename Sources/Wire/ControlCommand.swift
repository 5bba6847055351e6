/// The commands of the control socket (PROTOCOL.md §2.3), by their wire names.
public enum ControlCommand: String, Sendable, CaseIterable {
    case attach
    case detach
    case replay
    case status
    case mappings
    case metrics
    case logLevel = "log-level"
    case shutdown

    /// Wire names, for "known commands are …" messages.
    public static var names: [String] { allCases.map(\.rawValue) }
}
