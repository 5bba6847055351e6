/// One device of an IOMMU group, from /sys/kernel/iommu_groups/N/devices.
public struct GroupMember: Sendable, Equatable, CustomStringConvertible {
    /// The device's sysfs name, e.g. "0000:01:00.0".
    public var name: String
    /// Basename of its `driver` link, or nil when no driver is bound.
    public var driver: String?

    public init(name: String, driver: String?) {
        self.name = name
        self.driver = driver
    }

    /// The driver VFIO devices must be bound to.
    public static let vfioDriver = "vfio-pci"

    /// True when bound to vfio-pci.
    public var isBoundToVFIO: Bool { driver == Self.vfioDriver }

    public var description: String { "\(name) (driver \(driver ?? "none"))" }
}
