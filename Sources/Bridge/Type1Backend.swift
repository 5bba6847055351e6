import Synchronization
import VFIO

/// The production `DMABackend`: a VFIO type1 container whose IOMMU model is
/// already set (groups attached). Each call is one ioctl; when it returns,
/// the kernel has the mapping or has refused it.
///
/// `limits()` is cached: page sizes and IOVA ranges only change when a group
/// joins the container, but the DMA-available count changes with every
/// mapping, so any map or unmap drops the cache and the next call asks the
/// kernel again (one cheap ioctl).
public final class Type1Backend: DMABackend, Sendable {
    /// The container the mappings live in.
    public let container: Container
    private let cachedLimits = Mutex<IOMMUInfo?>(nil)

    /// Wraps `container`, which the backend does not close.
    public init(container: Container) {
        self.container = container
    }

    public func limits() throws(VFIOError) -> IOMMUInfo {
        if let cached = cachedLimits.withLock({ $0 }) { return cached }
        let info = try container.info()
        cachedLimits.withLock { $0 = info }
        return info
    }

    public func map(iova: UInt64, size: UInt64, hostAddress: UInt64, permission: DMAPermission) throws(VFIOError) {
        defer { invalidateLimits() }
        var access: DMAAccess = []
        if permission.contains(.read) { access.insert(.read) }
        if permission.contains(.write) { access.insert(.write) }
        try container.map(iova: iova, size: size, hostAddress: hostAddress, permission: access)
    }

    public func unmap(iova: UInt64, size: UInt64) throws(VFIOError) {
        defer { invalidateLimits() }
        try container.unmap(iova: iova, size: size)
    }

    public func unmapAll() throws(VFIOError) {
        defer { invalidateLimits() }
        try container.unmapAll()
    }

    private func invalidateLimits() {
        cachedLimits.withLock { $0 = nil }
    }
}
