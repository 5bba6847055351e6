/// A JSON value with the place it was written, for texts people edit: a
/// complaint about a value can then name its line (`JSONDocument.line(of:)`),
/// and a number can be quoted as written (`JSONDocument.text(of:)`), which
/// matters for one too large to be an integer.
public struct JSONNode: Sendable, Equatable {
    public enum Content: Sendable, Equatable {
        /// null, a boolean, a number or a string.
        case scalar(JSONValue)
        case array([JSONNode])
        /// The members in the order written (keys are unique).
        case object([JSONMember])
    }

    public var content: Content
    /// Byte offsets of the value's text, in the text it was parsed from.
    public var range: Range<Int>

    public init(content: Content, range: Range<Int>) {
        self.content = content
        self.range = range
    }

    /// The value without its positions.
    public var value: JSONValue {
        switch content {
        case let .scalar(value): value
        case let .array(elements): .array(elements.map(\.value))
        case let .object(members): .object(Dictionary(uniqueKeysWithValues: members.map { ($0.name, $0.value.value) }))
        }
    }
}

/// One member of an object as written.
public struct JSONMember: Sendable, Equatable {
    public var name: String
    /// Byte offset of the key's opening quote.
    public var nameOffset: Int
    public var value: JSONNode

    public init(name: String, nameOffset: Int, value: JSONNode) {
        self.name = name
        self.nameOffset = nameOffset
        self.value = value
    }
}
