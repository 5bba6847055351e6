/// DMA_UNMAP's payload (vfio-user.rst, "VFIO_USER_DMA_UNMAP"): argsz (u32,
/// the largest reply payload the client accepts), flags (u32), address (u64),
/// size (u64). 24 bytes. The reply echoes the same structure, so `argsz`
/// must leave room for it; QEMU 11.1 sends 24 (observed).
public struct VFIOUserDMAUnmap: Sendable, Equatable {
    public var argsz: UInt32
    public var flags: UInt32
    public var iova: UInt64
    public var size: UInt64

    public static let size = 24

    public init(argsz: UInt32 = UInt32(VFIOUserDMAUnmap.size), flags: UInt32 = 0, iova: UInt64, size: UInt64) {
        self.argsz = argsz
        self.flags = flags
        self.iova = iova
        self.size = size
    }

    func encode(into bytes: inout [UInt8]) {
        bytes.appendLittleEndian(argsz)
        bytes.appendLittleEndian(flags)
        bytes.appendLittleEndian(iova)
        bytes.appendLittleEndian(size)
    }

    static func decode(_ r: LittleEndianReader) -> VFIOUserDMAUnmap {
        VFIOUserDMAUnmap(argsz: r.u32(0), flags: r.u32(4), iova: r.u64(8), size: r.u64(16))
    }
}
