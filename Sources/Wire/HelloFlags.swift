/// The `flags` word of `HELLO` (PROTOCOL.md §1.6). Only bit 0 is defined;
/// the others must be 0, so a future flag is refused rather than ignored.
public struct HelloFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// The VMM walks the guest tables itself and sends `NOTIFY`.
    public static let notifierMode = HelloFlags(rawValue: 1 << 0)

    /// Every bit this version of the protocol defines.
    public static let defined: HelloFlags = [.notifierMode]
}
