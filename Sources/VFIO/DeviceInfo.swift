import CVFIO

/// The reply of VFIO_DEVICE_GET_INFO.
public struct DeviceInfo: Sendable, Equatable {
    /// Raw vfio_device_info.flags.
    public var flags: UInt32
    /// Number of regions (max region index + 1).
    public var numRegions: UInt32
    /// Number of interrupt types (max IRQ index + 1).
    public var numIRQs: UInt32

    public init(flags: UInt32, numRegions: UInt32, numIRQs: UInt32) {
        self.flags = flags
        self.numRegions = numRegions
        self.numIRQs = numIRQs
    }

    /// VFIO_DEVICE_FLAGS_PCI: a vfio-pci device, with the PCI region layout.
    public var isPCI: Bool { UInt(flags) & cvfio_VFIO_DEVICE_FLAGS_PCI != 0 }
    /// VFIO_DEVICE_FLAGS_RESET: VFIO_DEVICE_RESET is available.
    public var supportsReset: Bool { UInt(flags) & cvfio_VFIO_DEVICE_FLAGS_RESET != 0 }
}

/// The reply of VFIO_DEVICE_GET_REGION_INFO: where a region lives in the
/// device descriptor's file offsets.
public struct RegionInfo: Sendable, Equatable {
    /// The region index asked for.
    public var index: UInt32
    /// Raw vfio_region_info.flags.
    public var flags: UInt32
    /// Region size in bytes (0 when the region is absent, e.g. an unused BAR).
    public var size: UInt64
    /// Offset of the region in the device descriptor, for pread/pwrite/mmap.
    public var offset: UInt64
    /// The capability chain after the fixed fields, raw (sparse mmap areas,
    /// region types: Linux's vfio_info_cap_header chain), with
    /// `capabilityOffset` counted from the start of vfio_region_info, as the
    /// kernel counts it. Empty unless asked for and present.
    public var capabilities: [UInt8]
    public var capabilityOffset: UInt32

    public init(index: UInt32, flags: UInt32, size: UInt64, offset: UInt64,
                capabilities: [UInt8] = [], capabilityOffset: UInt32 = 0) {
        self.index = index
        self.flags = flags
        self.size = size
        self.offset = offset
        self.capabilities = capabilities
        self.capabilityOffset = capabilityOffset
    }

    public var isReadable: Bool { UInt(flags) & cvfio_VFIO_REGION_INFO_FLAG_READ != 0 }
    public var isWritable: Bool { UInt(flags) & cvfio_VFIO_REGION_INFO_FLAG_WRITE != 0 }
    public var supportsMmap: Bool { UInt(flags) & cvfio_VFIO_REGION_INFO_FLAG_MMAP != 0 }

    /// vfio-pci's index of BAR `n` (0...5).
    public static func pciBAR(_ n: UInt32) -> UInt32 {
        precondition(n < 6, "PCI has BARs 0...5")
        return UInt32(cvfio_VFIO_PCI_BAR0_REGION_INDEX) + n
    }

    /// vfio-pci's index of PCI configuration space.
    public static var pciConfig: UInt32 { UInt32(cvfio_VFIO_PCI_CONFIG_REGION_INDEX) }
}
