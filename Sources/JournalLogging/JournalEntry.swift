/// One journal entry: its fields in order, and their encoding in journald's
/// native protocol (systemd's "Native Journal Protocol" document, also
/// described in sd_journal_print(3)).
///
/// A datagram to /run/systemd/journal/socket holds the fields one after the
/// other. A value without a newline is sent as text:
///
///     NAME=value\n
///
/// A value containing a newline cannot be, since the newline ends the
/// field; it is sent in the binary form instead: the name, a newline, the
/// value's length as a 64-bit little-endian integer, the value's bytes, and
/// a newline:
///
///     NAME\n <8 bytes: length, little-endian> value\n
public struct JournalEntry: Sendable, Equatable {
    public struct Field: Sendable, Equatable {
        /// Already a valid field name (JournalFieldName.sanitize).
        public var name: String
        public var value: String

        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    public var fields: [Field]

    public init(fields: [Field] = []) {
        self.fields = fields
    }

    public mutating func append(_ name: String, _ value: String) {
        fields.append(Field(name, value))
    }

    /// The first value of field `name`, if any.
    public subscript(name: String) -> String? {
        fields.first { $0.name == name }?.value
    }

    /// The datagram's bytes.
    public var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 10 })
        for field in fields {
            bytes.append(contentsOf: field.name.utf8)
            if field.value.utf8.contains(0x0A) {
                bytes.append(0x0A)
                let length = UInt64(field.value.utf8.count)
                for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: length >> UInt64(shift))) }
                bytes.append(contentsOf: field.value.utf8)
            } else {
                bytes.append(0x3D)
                bytes.append(contentsOf: field.value.utf8)
            }
            bytes.append(0x0A)
        }
        return bytes
    }
}
