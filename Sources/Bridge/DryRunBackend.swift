import Logging
import VFIO
import VTd

/// A backend that accepts every map and unmap and touches no kernel state.
///
/// A user feature for hosts without VFIO (trying the daemon, inspecting what
/// a guest would get, benchmarking the sync itself). It is never the default,
/// and no test of the real path stands on it.
public final class DryRunBackend: DMABackend {
    private let info: IOMMUInfo
    private let logger: Logger?
    public private(set) var maps = 0
    public private(set) var unmaps = 0

    public init(info: IOMMUInfo = IOMMUInfo(pageSizes: 0x4020_1000, iovaRanges: nil, dmaAvailable: nil),
                logger: Logger? = nil) {
        self.info = info
        self.logger = logger
    }

    public func limits() throws(VFIOError) -> IOMMUInfo { info }

    public func map(iova: UInt64, size: UInt64, hostAddress: UInt64, permission: DMAPermission) throws(VFIOError) {
        maps += 1
        logger?.trace("dry-run map", metadata: ["iova": "0x\(String(iova, radix: 16))", "size": "0x\(String(size, radix: 16))"])
    }

    public func unmap(iova: UInt64, size: UInt64) throws(VFIOError) {
        unmaps += 1
        logger?.trace("dry-run unmap", metadata: ["iova": "0x\(String(iova, radix: 16))", "size": "0x\(String(size, radix: 16))"])
    }

    public func unmapAll() throws(VFIOError) {
        unmaps += 1
        logger?.trace("dry-run unmap-all")
    }

    public func unmapRange(iova: UInt64, size: UInt64) throws(VFIOError) -> UInt64 {
        unmaps += 1
        return 0
    }
}
