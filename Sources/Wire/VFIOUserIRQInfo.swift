/// DEVICE_GET_IRQ_INFO's payload, command and reply (vfio-user.rst,
/// "VFIO_USER_DEVICE_GET_IRQ_INFO"; Linux's struct vfio_irq_info): argsz,
/// flags (bit 0 EVENTFD, 1 MASKABLE, 2 AUTOMASKED, 3 NORESIZE), index,
/// count, all u32. QEMU 11.1 asks for index 3 (error IRQ) only (observed).
public struct VFIOUserIRQInfo: Sendable, Equatable {
    public var argsz: UInt32
    public var flags: UInt32
    public var index: UInt32
    public var count: UInt32

    public static let size = 16
    public static let flagEventFD: UInt32 = 1 << 0
    public static let flagMaskable: UInt32 = 1 << 1
    public static let flagAutomasked: UInt32 = 1 << 2
    public static let flagNoResize: UInt32 = 1 << 3

    public init(argsz: UInt32 = UInt32(VFIOUserIRQInfo.size), flags: UInt32 = 0, index: UInt32, count: UInt32 = 0) {
        self.argsz = argsz
        self.flags = flags
        self.index = index
        self.count = count
    }

    func encode(into bytes: inout [UInt8]) {
        bytes.appendLittleEndian(argsz)
        bytes.appendLittleEndian(flags)
        bytes.appendLittleEndian(index)
        bytes.appendLittleEndian(count)
    }

    static func decode(_ r: LittleEndianReader) -> VFIOUserIRQInfo {
        VFIOUserIRQInfo(argsz: r.u32(0), flags: r.u32(4), index: r.u32(8), count: r.u32(12))
    }
}
