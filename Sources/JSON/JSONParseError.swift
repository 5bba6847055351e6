/// Why a text is not acceptable JSON: where, and what was found there. The
/// control socket quotes the byte offset (`description`; a request is one
/// line); the config file quotes the line and column.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Offset of the offending byte in the UTF-8 text.
    public var offset: Int
    /// Line and column of that byte (`JSONTextPosition`).
    public var line: Int
    public var column: Int
    public var message: String

    public init(offset: Int, line: Int, column: Int, message: String) {
        self.offset = offset
        self.line = line
        self.column = column
        self.message = message
    }

    init(offset: Int, in bytes: UnsafeBufferPointer<UInt8>, message: String) {
        let position = JSONTextPosition.locate(offset, in: bytes)
        self.init(offset: offset, line: position.line, column: position.column, message: message)
    }

    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}
