import VFIO
import VTd

/// The production `DMABackend`: a VFIO type1 container whose IOMMU model is
/// already set (groups attached). Each call is one ioctl; when it returns,
/// the kernel has the mapping or has refused it.
///
/// `limits()` asks the kernel each time (one GET_INFO): it is called when an
/// address space is created and when `status` shows the DMA mappings left,
/// never on the map/unmap path, which stays one ioctl with nothing around it.
public final class Type1Backend: DMABackend, Sendable {
    /// The container the mappings live in.
    public let container: Container

    /// Wraps `container`, which the backend does not close.
    public init(container: Container) {
        self.container = container
    }

    public func limits() throws(VFIOError) -> IOMMUInfo {
        try container.info()
    }

    public func map(iova: UInt64, size: UInt64, hostAddress: UInt64, permission: DMAPermission) throws(VFIOError) {
        try container.map(iova: iova, size: size, hostAddress: hostAddress, permission: permission)
    }

    public func unmap(iova: UInt64, size: UInt64) throws(VFIOError) {
        try container.unmap(iova: iova, size: size)
    }

    public func unmapAll() throws(VFIOError) {
        try container.unmapAll()
    }

    public func unmapRange(iova: UInt64, size: UInt64) throws(VFIOError) -> UInt64 {
        try container.unmapRange(iova: iova, size: size)
    }
}
