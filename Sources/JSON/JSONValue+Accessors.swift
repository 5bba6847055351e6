// Typed views of a JSON value: nil when the value is not of that kind.
extension JSONValue {
    public var isNull: Bool { if case .null = self { true } else { false } }

    public var boolValue: Bool? { if case .bool(let v) = self { v } else { nil } }

    public var stringValue: String? { if case .string(let v) = self { v } else { nil } }

    public var arrayValue: [JSONValue]? { if case .array(let v) = self { v } else { nil } }

    public var objectValue: [String: JSONValue]? { if case .object(let v) = self { v } else { nil } }

    /// An integer that fits `Int64`. Doubles are not integers here, even 1.0.
    public var int64Value: Int64? {
        switch self {
        case .int(let v): v
        case .uint(let v): Int64(exactly: v)
        default: nil
        }
    }

    /// A non-negative integer that fits `UInt64`.
    public var uint64Value: UInt64? {
        switch self {
        case .int(let v): UInt64(exactly: v)
        case .uint(let v): v
        default: nil
        }
    }

    /// An integer that fits `Int`.
    public var intValue: Int? { int64Value.flatMap { Int(exactly: $0) } }

    /// Any number as a `Double` (integers may round).
    public var doubleValue: Double? {
        switch self {
        case .int(let v): Double(v)
        case .uint(let v): Double(v)
        case .double(let v): v
        default: nil
        }
    }

    /// Whether this is a number written as an integer.
    public var isInteger: Bool {
        switch self {
        case .int, .uint: true
        default: false
        }
    }

    /// A member of an object; nil for other values and missing keys.
    public subscript(key: String) -> JSONValue? { objectValue?[key] }

    /// An element of an array; nil for other values and out-of-range indices.
    public subscript(index: Int) -> JSONValue? {
        guard case .array(let elements) = self, elements.indices.contains(index) else { return nil }
        return elements[index]
    }

    /// "a string", "an object", …: for error messages that say what was sent.
    public var kindDescription: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int, .uint: "an integer"
        case .double: "a non-integer number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}
