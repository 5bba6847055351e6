import VTd

/// One mapping the kernel holds for an address space: exactly what was passed
/// to MAP_DMA (IOVA, size, host virtual address, access), so that the matching
/// UNMAP_DMA can name it exactly and a replay can tell whether the kernel
/// already holds what the guest's tables ask for.
///
/// 24 bytes: the permission bits ride in the low bits of the size, which is a
/// multiple of 4 KiB, and the guest-physical address is not kept (the kernel
/// never sees it; reports derive it from the host address and the memory
/// table). The shadow of a 4 GiB space of 4 KiB pages is 24 MiB.
public struct ShadowEntry: IOVAOrderedEntry, Hashable {
    public var iova: UInt64
    @usableFromInline var sizeAndPermission: UInt64
    public var hostAddress: UInt64

    @inlinable
    public init(iova: UInt64, size: UInt64, hostAddress: UInt64, permission: DMAPermission) {
        precondition(size & 0xfff == 0 && size > 0, "mappings are whole 4 KiB pages")
        self.iova = iova
        sizeAndPermission = size | UInt64(permission.rawValue)
        self.hostAddress = hostAddress
    }

    @inlinable public var size: UInt64 { sizeAndPermission & ~0xfff }
    @inlinable public var permission: DMAPermission { DMAPermission(rawValue: UInt8(sizeAndPermission & 3)) }
    /// One past the last IOVA; saturates at 2^64 - 1 for a mapping that ends there.
    @inlinable public var end: UInt64 {
        let (e, o) = iova.addingReportingOverflow(size)
        return o ? UInt64.max : e
    }
}
