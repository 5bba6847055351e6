/// A JSON value (RFC 8259): the control socket's requests and replies
/// (PROTOCOL.md §2), the bridge's translation reports, the daemon's files.
///
/// Integers keep their exact value: the parser produces `.int` for every
/// integer that fits `Int64` and `.uint` only above `Int64.max`, so that
/// 18446744073709551615 round-trips. Equality and hashing compare integers by
/// value, so `.int(5) == .uint(5)`. A number written with a fraction or an
/// exponent is a `.double`, distinct from any integer (`1.0 != 1`).
public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// The integer `value`: `.int` when it fits `Int64`, `.uint` when it fits
    /// `UInt64`, else (wider types only) the nearest `.double`.
    public init(integer value: some BinaryInteger) {
        if let small = Int64(exactly: value) {
            self = .int(small)
        } else if let large = UInt64(exactly: value) {
            self = .uint(large)
        } else {
            self = .double(Double(value))
        }
    }

    /// An address as the replies of PROTOCOL.md §2.3 write it: `"0x…"`, lowercase hex.
    public static func address(_ value: UInt64) -> JSONValue { .string("0x" + String(value, radix: 16)) }

    /// An integer's value as a (sign, magnitude) pair, for value comparison.
    fileprivate var integerKey: (negative: Bool, magnitude: UInt64)? {
        switch self {
        case .int(let v): (v < 0, v.magnitude)
        case .uint(let v): (false, v)
        default: nil
        }
    }
}

extension JSONValue: Equatable {
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.double(let a), .double(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)): return a == b
        default:
            guard let a = lhs.integerKey, let b = rhs.integerKey else { return false }
            return a == b
        }
    }
}

extension JSONValue: Hashable {
    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .bool(let v): hasher.combine(1); hasher.combine(v)
        case .int, .uint:
            let key = integerKey!
            hasher.combine(2); hasher.combine(key.negative); hasher.combine(key.magnitude)
        case .double(let v): hasher.combine(3); hasher.combine(v)
        case .string(let v): hasher.combine(4); hasher.combine(v)
        case .array(let v): hasher.combine(5); hasher.combine(v)
        case .object(let v): hasher.combine(6); hasher.combine(v)
        }
    }
}

extension JSONValue: CustomStringConvertible {
    /// The compact serialization.
    public var description: String { serialized }
}
