import VTd

/// The 16-byte header in front of every event-channel frame (PROTOCOL.md §1.2):
/// `type` (u32), `length` (u32, payload bytes), `tag` (u64, echoed in the reply).
public struct FrameHeader: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var type: UInt32
    public var length: UInt32
    public var tag: UInt64

    /// Header size in bytes (§1.2).
    public static let size = 16
    /// Largest `length` the protocol allows (§1.2); above it the reply is
    /// `TOO_LARGE` and the connection is closed.
    public static let maxPayload = EventLimits.maxPayload

    public init(type: UInt32, length: UInt32, tag: UInt64) {
        self.type = type
        self.length = length
        self.tag = tag
    }

    /// Whether bit 31 of `type` is set, i.e. this frame is a reply (§1.2).
    public var isReply: Bool { type & EventType.replyBit != 0 }

    /// Appends the 16 header bytes, little-endian (§1.2).
    public func encode(into bytes: inout [UInt8]) {
        bytes.appendLittleEndian(type)
        bytes.appendLittleEndian(length)
        bytes.appendLittleEndian(tag)
    }

    /// Decodes a header from exactly `FrameHeader.size` bytes. The caller
    /// (a framing layer) knows it has 16 bytes; a different count is a bug
    /// in that caller and traps.
    public static func decode(_ bytes: some Collection<UInt8>) -> FrameHeader {
        precondition(bytes.count == size, "FrameHeader.decode needs exactly \(size) bytes, got \(bytes.count)")
        if let header = bytes.withContiguousStorageIfAvailable({ decode(UnsafeRawBufferPointer($0), at: 0) }) {
            return header
        }
        return Array(bytes).withUnsafeBytes { decode($0, at: 0) }
    }

    /// The hot-path form: decodes the header at `offset` of a buffer the
    /// caller has checked holds at least 16 bytes there.
    @usableFromInline
    static func decode(_ raw: UnsafeRawBufferPointer, at offset: Int) -> FrameHeader {
        let reader = LittleEndianReader(raw)
        return FrameHeader(type: reader.u32(offset), length: reader.u32(offset + 4), tag: reader.u64(offset + 8))
    }

    public var description: String {
        "\(EventType.describe(type)) (type \(hex(type)), length \(length), tag \(tag))"
    }
}
