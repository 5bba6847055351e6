/// DEVICE_GET_INFO's payload, command and reply (vfio-user.rst,
/// "VFIO_USER_DEVICE_GET_INFO"; Linux's struct vfio_device_info): argsz,
/// flags (bit 0 RESET, bit 1 PCI), num_regions, num_irqs, all u32. In the
/// command only argsz is set, to the room the client has for the reply.
public struct VFIOUserDeviceInfo: Sendable, Equatable {
    public var argsz: UInt32
    public var flags: UInt32
    public var regionCount: UInt32
    public var irqCount: UInt32

    public static let size = 16
    /// The device supports DEVICE_RESET.
    public static let flagReset: UInt32 = 1 << 0
    /// The device is PCI (the only kind this protocol version supports).
    public static let flagPCI: UInt32 = 1 << 1

    public init(argsz: UInt32 = UInt32(VFIOUserDeviceInfo.size), flags: UInt32 = 0, regionCount: UInt32 = 0, irqCount: UInt32 = 0) {
        self.argsz = argsz
        self.flags = flags
        self.regionCount = regionCount
        self.irqCount = irqCount
    }

    func encode(into bytes: inout [UInt8]) {
        bytes.appendLittleEndian(argsz)
        bytes.appendLittleEndian(flags)
        bytes.appendLittleEndian(regionCount)
        bytes.appendLittleEndian(irqCount)
    }

    static func decode(_ r: LittleEndianReader) -> VFIOUserDeviceInfo {
        VFIOUserDeviceInfo(argsz: r.u32(0), flags: r.u32(4), regionCount: r.u32(8), irqCount: r.u32(12))
    }
}
