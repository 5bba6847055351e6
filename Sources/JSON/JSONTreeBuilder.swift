/// What `JSONParser` makes of the values it reads. The parser checks the
/// grammar and words every error; a builder only assembles the result. Two
/// exist: `JSONValueBuilder` (plain values, for the control socket, where
/// positions would be wasted work) and `JSONNodeBuilder` (values with where
/// they were written, for the config file). Static dispatch keeps the plain
/// path as fast as a parser written for it alone.
protocol JSONTreeBuilder {
    associatedtype Node
    associatedtype Members

    /// null, a boolean, a number or a string, written at `text`.
    static func scalar(_ value: JSONValue, text: Range<Int>) -> Node
    static func array(_ elements: [Node], text: Range<Int>) -> Node
    static func emptyMembers() -> Members
    /// Whether an object already has a key, and where it was written when
    /// the builder keeps that: the parser refuses the repeat with it.
    static func lookup(_ name: String, in members: Members) -> JSONMemberLookup
    static func add(_ name: String, at nameOffset: Int, _ value: Node, to members: inout Members)
    static func object(_ members: Members, text: Range<Int>) -> Node
}

enum JSONMemberLookup {
    case absent
    /// The offset of the earlier key, nil when the builder does not keep it.
    case present(nameOffset: Int?)
}

/// Plain values: the control socket's requests and replies.
enum JSONValueBuilder: JSONTreeBuilder {
    static func scalar(_ value: JSONValue, text: Range<Int>) -> JSONValue { value }

    static func array(_ elements: [JSONValue], text: Range<Int>) -> JSONValue { .array(elements) }

    static func emptyMembers() -> [String: JSONValue] { [:] }

    static func lookup(_ name: String, in members: [String: JSONValue]) -> JSONMemberLookup {
        members[name] == nil ? .absent : .present(nameOffset: nil)
    }

    static func add(_ name: String, at nameOffset: Int, _ value: JSONValue, to members: inout [String: JSONValue]) {
        members[name] = value
    }

    static func object(_ members: [String: JSONValue], text: Range<Int>) -> JSONValue { .object(members) }
}

/// Values with their positions, members in the order written: `JSONDocument`.
enum JSONNodeBuilder: JSONTreeBuilder {
    struct Members {
        var list: [JSONMember] = []
        var nameOffsets: [String: Int] = [:]
    }

    static func scalar(_ value: JSONValue, text: Range<Int>) -> JSONNode { JSONNode(content: .scalar(value), range: text) }

    static func array(_ elements: [JSONNode], text: Range<Int>) -> JSONNode { JSONNode(content: .array(elements), range: text) }

    static func emptyMembers() -> Members { Members() }

    static func lookup(_ name: String, in members: Members) -> JSONMemberLookup {
        members.nameOffsets[name].map { .present(nameOffset: $0) } ?? .absent
    }

    static func add(_ name: String, at nameOffset: Int, _ value: JSONNode, to members: inout Members) {
        members.list.append(JSONMember(name: name, nameOffset: nameOffset, value: value))
        members.nameOffsets[name] = nameOffset
    }

    static func object(_ members: Members, text: Range<Int>) -> JSONNode { JSONNode(content: .object(members.list), range: text) }
}
