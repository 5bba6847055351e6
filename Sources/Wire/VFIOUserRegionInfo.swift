/// DEVICE_GET_REGION_INFO's payload, command and reply (vfio-user.rst,
/// "VFIO_USER_DEVICE_GET_REGION_INFO"; Linux's struct vfio_region_info):
/// argsz (u32), flags (u32), index (u32), cap_offset (u32), size (u64),
/// offset (u64). 32 bytes. In the command only argsz and index matter; in
/// the reply, argsz is the room the full answer needs (capabilities included)
/// and the region's fd, when mmappable, travels beside the message.
public struct VFIOUserRegionInfo: Sendable, Equatable {
    public var argsz: UInt32
    public var flags: UInt32
    public var index: UInt32
    public var capabilityOffset: UInt32
    public var size: UInt64
    public var offset: UInt64

    public static let size = 32
    public static let flagRead: UInt32 = 1 << 0
    public static let flagWrite: UInt32 = 1 << 1
    public static let flagMmap: UInt32 = 1 << 2
    public static let flagCaps: UInt32 = 1 << 3

    public init(argsz: UInt32 = UInt32(VFIOUserRegionInfo.size), flags: UInt32 = 0, index: UInt32,
                capabilityOffset: UInt32 = 0, size: UInt64 = 0, offset: UInt64 = 0) {
        self.argsz = argsz
        self.flags = flags
        self.index = index
        self.capabilityOffset = capabilityOffset
        self.size = size
        self.offset = offset
    }

    func encode(into bytes: inout [UInt8]) {
        bytes.appendLittleEndian(argsz)
        bytes.appendLittleEndian(flags)
        bytes.appendLittleEndian(index)
        bytes.appendLittleEndian(capabilityOffset)
        bytes.appendLittleEndian(size)
        bytes.appendLittleEndian(offset)
    }

    static func decode(_ r: LittleEndianReader) -> VFIOUserRegionInfo {
        VFIOUserRegionInfo(argsz: r.u32(0), flags: r.u32(4), index: r.u32(8), capabilityOffset: r.u32(12),
                           size: r.u64(16), offset: r.u64(24))
    }
}
