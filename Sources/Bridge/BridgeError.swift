/// Why the bridge refused a request.
public struct BridgeError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case cachingModeRequired = "caching-mode-required"
        /// CAP.SAGAW offers no table depth the walker handles.
        case unsupportedLevels = "unsupported-levels"
        case alreadyAttached = "already-attached"
        case notAttached = "not-attached"
        case backend = "backend"
    }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
