/// One region of `SET_MEM_TABLE` (PROTOCOL.md §1.6): `size` bytes of guest RAM
/// at guest-physical `gpa`, found at `offset` in the file descriptor sent with
/// the same index.
public struct MemoryRegionDescriptor: Sendable, Equatable, Hashable {
    public var gpa: UInt64
    public var size: UInt64
    public var offset: UInt64

    public init(gpa: UInt64, size: UInt64, offset: UInt64) {
        self.gpa = gpa
        self.size = size
        self.offset = offset
    }

    /// Bytes per descriptor on the wire.
    static let wireSize = 24
}
