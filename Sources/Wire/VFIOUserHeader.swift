import VTd

/// The 16-byte header in front of every vfio-user message, command or reply
/// (vfio-user.rst, "Header"): message ID (u16), command (u16), message size
/// (u32, header included), flags (u32), error (u32).
///
/// The spec says "host endianness"; every host this daemon runs on (x86-64
/// Linux) is little-endian, so the codec reads and writes little-endian.
public struct VFIOUserHeader: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var messageID: UInt16
    /// The raw command number, kept raw so that an unknown one can be named
    /// in the refusal and echoed in the error reply.
    public var command: UInt16
    public var messageSize: UInt32
    public var flags: UInt32
    /// An errno in a reply with the error flag; reserved (0) in a command.
    public var error: UInt32

    /// Header size in bytes.
    public static let size = 16

    /// Flags bits 0-3: the message type, 0 for a command and 1 for a reply.
    public static let typeMask: UInt32 = 0xF
    public static let typeCommand: UInt32 = 0
    public static let typeReply: UInt32 = 1
    /// Flags bit 4: the sender of a command wants no reply.
    public static let noReplyFlag: UInt32 = 1 << 4
    /// Flags bit 5: the reply reports a failed command; `error` holds the errno.
    public static let errorFlag: UInt32 = 1 << 5
    /// Every flag bit the spec defines; the rest must be 0.
    public static let definedFlags: UInt32 = typeMask | noReplyFlag | errorFlag

    public init(messageID: UInt16, command: UInt16, messageSize: UInt32, flags: UInt32 = 0, error: UInt32 = 0) {
        self.messageID = messageID
        self.command = command
        self.messageSize = messageSize
        self.flags = flags
        self.error = error
    }

    public var isReply: Bool { flags & Self.typeMask == Self.typeReply }
    public var isCommand: Bool { flags & Self.typeMask == Self.typeCommand }
    public var noReply: Bool { flags & Self.noReplyFlag != 0 }
    public var isError: Bool { flags & Self.errorFlag != 0 }

    /// Appends the 16 header bytes.
    public func encode(into bytes: inout [UInt8]) {
        bytes.appendLittleEndian(messageID)
        bytes.appendLittleEndian(command)
        bytes.appendLittleEndian(messageSize)
        bytes.appendLittleEndian(flags)
        bytes.appendLittleEndian(error)
    }

    /// Decodes a header from exactly `VFIOUserHeader.size` bytes; a framing
    /// layer that calls this with another count has a bug, so it traps.
    public static func decode(_ bytes: some Collection<UInt8>) -> VFIOUserHeader {
        precondition(bytes.count == size, "VFIOUserHeader.decode needs exactly \(size) bytes, got \(bytes.count)")
        if let header = bytes.withContiguousStorageIfAvailable({ decode(UnsafeRawBufferPointer($0), at: 0) }) {
            return header
        }
        return Array(bytes).withUnsafeBytes { decode($0, at: 0) }
    }

    /// Decodes the header at `offset` of a buffer known to hold 16 bytes there.
    static func decode(_ raw: UnsafeRawBufferPointer, at offset: Int) -> VFIOUserHeader {
        let r = LittleEndianReader(raw)
        return VFIOUserHeader(messageID: r.u16(offset), command: r.u16(offset + 2), messageSize: r.u32(offset + 4),
                              flags: r.u32(offset + 8), error: r.u32(offset + 12))
    }

    public var description: String {
        let kind = isReply ? "reply to " : ""
        return "\(kind)\(VFIOUserCommand.describe(command)) (id \(messageID), size \(messageSize), flags \(hex(flags)), error \(error))"
    }
}
