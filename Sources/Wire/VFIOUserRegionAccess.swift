/// The 16 bytes in front of REGION_READ and REGION_WRITE, commands and
/// replies (vfio-user.rst, "VFIO_USER_REGION_READ"/"WRITE"): offset (u64,
/// into the region), region (u32, its index), count (u32, data bytes).
/// The data follows in a write command and in a read reply.
public struct VFIOUserRegionAccess: Sendable, Equatable {
    public var offset: UInt64
    public var region: UInt32
    public var count: UInt32

    public static let size = 16

    public init(offset: UInt64, region: UInt32, count: UInt32) {
        self.offset = offset
        self.region = region
        self.count = count
    }

    func encode(into bytes: inout [UInt8]) {
        bytes.appendLittleEndian(offset)
        bytes.appendLittleEndian(region)
        bytes.appendLittleEndian(count)
    }

    static func decode(_ r: LittleEndianReader) -> VFIOUserRegionAccess {
        VFIOUserRegionAccess(offset: r.u64(0), region: r.u32(8), count: r.u32(12))
    }
}
