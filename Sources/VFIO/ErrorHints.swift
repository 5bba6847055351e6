import Glibc

/// What an errno usually means for each VFIO call, in words an operator can
/// act on. Each function returns nil when we have nothing better than strerror.
enum ErrorHints {
    /// open("/dev/vfio/vfio").
    static func openContainer(_ code: Int32, path: String) -> String? {
        switch code {
        case ENOENT, ENODEV, ENXIO:
            return "no such device \(path): load vfio and vfio_iommu_type1 (modprobe vfio-pci) "
                + "and bind the device to vfio-pci"
        case EACCES, EPERM:
            return "permission denied on \(path): run as root or grant this user read/write on it"
        default:
            return nil
        }
    }

    /// open("/dev/vfio/N").
    static func openGroup(_ code: Int32, path: String, number: Int) -> String? {
        switch code {
        case ENOENT, ENODEV, ENXIO:
            return "IOMMU group \(number) is not present as \(path): no device of the group is bound "
                + "to vfio-pci (bind it, e.g. via driver_override, and check the IOMMU is enabled)"
        case EACCES, EPERM:
            return "permissions on \(path) do not allow this user to open it: run as root or "
                + "give this user read/write on \(path) (e.g. a udev rule)"
        case EBUSY:
            // Since Linux 6.2 vfio_group_fops_open refuses a second opener;
            // older kernels did the same through group->opened.
            return "group \(number) is already open by another process (a VM or another vtd-bridge); "
                + "a VFIO group can only be opened once"
        default:
            return nil
        }
    }

    /// VFIO_IOMMU_MAP_DMA.
    static func map(
        _ code: Int32,
        memoryLock: (soft: UInt64, hard: UInt64)?,
        entryLimit: String?,
        lastKnownAvailable: UInt32?
    ) -> String? {
        switch code {
        case ENOMEM:
            // type1 pins every mapped page and charges it to locked_vm; going
            // over RLIMIT_MEMLOCK fails the pin with ENOMEM
            // (vfio_iommu_type1.c, vfio_pin_pages_remote).
            var text = "pinning the pages would exceed RLIMIT_MEMLOCK"
            if let memoryLock {
                text += " (soft \(bytes(memoryLock.soft)), hard \(bytes(memoryLock.hard)))"
            }
            return text + "; raise LimitMEMLOCK= in the unit or ulimit -l"
        case ENOSPC:
            // type1 counts mappings per container against dma_entry_limit.
            var text = "the container reached the type1 mapping limit (module parameter "
                + "vfio_iommu_type1.dma_entry_limit, default 65535"
            if let entryLimit { text += ", now \(entryLimit)" }
            text += ")"
            if let lastKnownAvailable {
                text += "; VFIO_IOMMU_GET_INFO last reported \(lastKnownAvailable) mappings available"
            }
            return text + "; raise the parameter or map larger ranges"
        case EEXIST:
            return "an overlapping mapping already exists in this range; unmap it first"
        case EINVAL:
            return "the range is unaligned to the IOMMU page size, empty, has no permission, "
                + "or lies outside the usable IOVA ranges (reserved regions such as the MSI window)"
        case EFAULT:
            return "the host address is not mapped in this process"
        default:
            return nil
        }
    }

    /// VFIO_IOMMU_UNMAP_DMA.
    static func unmap(_ code: Int32) -> String? {
        switch code {
        case EINVAL, EBUSY:
            // type1v2 refuses an unmap whose first or last page falls inside
            // a mapping that does not start or end there
            // (vfio_iommu_type1.c, vfio_dma_do_unmap).
            return "the range is unaligned to the IOMMU page size or bisects an existing mapping "
                + "(type1v2 unmaps whole mappings only; unmap exactly what was mapped)"
        default:
            return nil
        }
    }

    /// A byte count the way ulimit users think of it.
    static func bytes(_ value: UInt64) -> String {
        if value == UInt64.max { return "unlimited" }
        if value >= 1 << 30, value % (1 << 30) == 0 { return "\(value >> 30) GiB" }
        if value >= 1 << 20, value % (1 << 20) == 0 { return "\(value >> 20) MiB" }
        if value >= 1 << 10, value % (1 << 10) == 0 { return "\(value >> 10) KiB" }
        return "\(value) bytes"
    }
}
