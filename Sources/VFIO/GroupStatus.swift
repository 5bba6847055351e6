import CVFIO

/// The reply of VFIO_GROUP_GET_STATUS.
public struct GroupStatus: Sendable, Equatable {
    /// Raw vfio_group_status.flags.
    public var flags: UInt32

    public init(flags: UInt32) { self.flags = flags }

    /// VFIO_GROUP_FLAGS_VIABLE: no device of the group is driven by a kernel
    /// driver that would share its DMA with us, so the group can be used.
    public var isViable: Bool { UInt(flags) & cvfio_VFIO_GROUP_FLAGS_VIABLE != 0 }

    /// VFIO_GROUP_FLAGS_CONTAINER_SET: the group is attached to a container.
    public var isContainerSet: Bool { UInt(flags) & cvfio_VFIO_GROUP_FLAGS_CONTAINER_SET != 0 }
}
