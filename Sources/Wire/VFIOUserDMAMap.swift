/// DMA_MAP's payload (vfio-user.rst, "VFIO_USER_DMA_MAP"): argsz (u32),
/// flags (u32: bit 0 readable, bit 1 writeable), offset (u64, into the fd),
/// address (u64, the IOVA), size (u64). 32 bytes; the reply has no payload.
///
/// The descriptor of a mappable region travels as SCM_RIGHTS beside the
/// message, not in it; QEMU 11.1 also sends maps without one (BIOS ROM,
/// its own BAR mmap), observed.
public struct VFIOUserDMAMap: Sendable, Equatable {
    public var argsz: UInt32
    public var flags: UInt32
    public var offset: UInt64
    public var iova: UInt64
    public var size: UInt64

    public static let size = 32
    public static let readable: UInt32 = 1 << 0
    public static let writeable: UInt32 = 1 << 1

    /// A map whose `argsz` is the structure's size, as the spec requires.
    public init(flags: UInt32, offset: UInt64, iova: UInt64, size: UInt64) {
        self.init(argsz: UInt32(Self.size), flags: flags, offset: offset, iova: iova, size: size)
    }

    public init(argsz: UInt32, flags: UInt32, offset: UInt64, iova: UInt64, size: UInt64) {
        self.argsz = argsz
        self.flags = flags
        self.offset = offset
        self.iova = iova
        self.size = size
    }

    public var isReadable: Bool { flags & Self.readable != 0 }
    public var isWriteable: Bool { flags & Self.writeable != 0 }

    func encode(into bytes: inout [UInt8]) {
        bytes.appendLittleEndian(argsz)
        bytes.appendLittleEndian(flags)
        bytes.appendLittleEndian(offset)
        bytes.appendLittleEndian(iova)
        bytes.appendLittleEndian(size)
    }

    static func decode(_ r: LittleEndianReader) -> VFIOUserDMAMap {
        VFIOUserDMAMap(argsz: r.u32(0), flags: r.u32(4), offset: r.u64(8), iova: r.u64(16), size: r.u64(24))
    }
}
