/// Where the VFIO character devices and the sysfs files live. The defaults
/// are the real ones; tests point them at a temporary tree or a fake kernel.
public struct VFIOPaths: Sendable, Equatable {
    /// Directory of the VFIO device nodes, normally "/dev/vfio".
    public var deviceDirectory: String
    /// Mount point of sysfs, normally "/sys".
    public var sysfs: String

    public init(deviceDirectory: String = "/dev/vfio", sysfs: String = "/sys") {
        self.deviceDirectory = deviceDirectory
        self.sysfs = sysfs
    }

    /// The container node, "/dev/vfio/vfio".
    public var container: String { deviceDirectory + "/vfio" }

    /// The node of IOMMU group `number`, "/dev/vfio/N".
    public func group(_ number: Int) -> String { deviceDirectory + "/\(number)" }

    /// The sysfs directory of a PCI device, "/sys/bus/pci/devices/DDDD:BB:DD.F"
    /// (itself a symlink into /sys/devices).
    public func pciDevice(_ address: PCIAddress) -> String {
        sysfs + "/bus/pci/devices/\(address)"
    }

    /// The directory listing the members of an IOMMU group,
    /// "/sys/kernel/iommu_groups/N/devices".
    public func groupDevices(_ number: Int) -> String {
        sysfs + "/kernel/iommu_groups/\(number)/devices"
    }

    /// The type1 module parameter that caps the number of DMA mappings per
    /// container (drivers/vfio/vfio_iommu_type1.c, default 65535).
    public var dmaEntryLimit: String {
        sysfs + "/module/vfio_iommu_type1/parameters/dma_entry_limit"
    }
}
