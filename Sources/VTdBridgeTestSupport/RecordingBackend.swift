import Bridge
import Glibc
import VFIO
import VTd

/// A test double for the kernel: records every call, and holds mappings with
/// VFIO type1v2 semantics so that tests catch what the kernel would refuse —
/// an overlapping map (EEXIST), an unmap that bisects a mapping (EINVAL in
/// v2), an unmap that names nothing.
public final class RecordingBackend: DMABackend {
    public enum Call: Equatable, CustomStringConvertible {
        case map(iova: UInt64, size: UInt64, hostAddress: UInt64, permission: DMAPermission)
        case unmap(iova: UInt64, size: UInt64)
        case unmapAll

        public var description: String {
            switch self {
            case let .map(iova, size, host, perm):
                "map(0x\(String(iova, radix: 16)), 0x\(String(size, radix: 16)), host 0x\(String(host, radix: 16)), \(perm.rawValue))"
            case let .unmap(iova, size): "unmap(0x\(String(iova, radix: 16)), 0x\(String(size, radix: 16)))"
            case .unmapAll: "unmapAll"
            }
        }
    }

    public struct Mapping: Equatable {
        public var size: UInt64
        public var hostAddress: UInt64
        public var permission: DMAPermission
        public init(size: UInt64, hostAddress: UInt64, permission: DMAPermission) {
            self.size = size
            self.hostAddress = hostAddress
            self.permission = permission
        }
    }

    public var info: IOMMUInfo
    public private(set) var calls: [Call] = []
    /// What the "kernel" holds: iova → mapping.
    public private(set) var mappings: [UInt64: Mapping] = [:]
    /// Decides whether a call fails, and with which errno (nil: it succeeds).
    public var inject: ((Call) -> Int32?)?

    public init(info: IOMMUInfo = IOMMUInfo(pageSizes: 0x4020_1000, iovaRanges: nil, dmaAvailable: nil)) {
        self.info = info
    }

    public func clearCalls() { calls.removeAll() }

    public func limits() throws(VFIOError) -> IOMMUInfo { info }

    private func fail(_ call: Call, _ op: String, _ errno: Int32) -> VFIOError {
        VFIOError(operation: op, subject: "recording backend", errno: errno, detail: call.description)
    }

    public func map(iova: UInt64, size: UInt64, hostAddress: UInt64, permission: DMAPermission) throws(VFIOError) {
        let call = Call.map(iova: iova, size: size, hostAddress: hostAddress, permission: permission)
        calls.append(call)
        if let e = inject?(call) { throw fail(call, "VFIO_IOMMU_MAP_DMA", e) }
        guard size > 0, size & 0xfff == 0, iova & 0xfff == 0 else { throw fail(call, "VFIO_IOMMU_MAP_DMA", EINVAL) }
        for (start, m) in mappings where start < iova + size && iova < start + m.size {
            throw fail(call, "VFIO_IOMMU_MAP_DMA", EEXIST)
        }
        mappings[iova] = Mapping(size: size, hostAddress: hostAddress, permission: permission)
    }

    public func unmap(iova: UInt64, size: UInt64) throws(VFIOError) {
        let call = Call.unmap(iova: iova, size: size)
        calls.append(call)
        if let e = inject?(call) { throw fail(call, "VFIO_IOMMU_UNMAP_DMA", e) }
        let hit = try wholeMappings(in: iova, size, call)
        let unmapped = hit.values.reduce(0) { $0 + $1.size }
        guard unmapped == size else {
            throw VFIOError(operation: "VFIO_IOMMU_UNMAP_DMA", subject: "recording backend", errno: 0,
                            detail: "kernel unmapped \(unmapped) bytes of \(size)")
        }
        for start in hit.keys { mappings.removeValue(forKey: start) }
    }

    public func unmapAll() throws(VFIOError) {
        calls.append(.unmapAll)
        if let e = inject?(.unmapAll) { throw fail(.unmapAll, "VFIO_IOMMU_UNMAP_DMA", e) }
        mappings.removeAll()
    }

    /// Records an `.unmap` call; unmaps whole mappings inside the range
    /// (type1v2 refuses a range that cuts one: EINVAL) and returns their bytes.
    public func unmapRange(iova: UInt64, size: UInt64) throws(VFIOError) -> UInt64 {
        let call = Call.unmap(iova: iova, size: size)
        calls.append(call)
        if let e = inject?(call) { throw fail(call, "VFIO_IOMMU_UNMAP_DMA", e) }
        let hit = try wholeMappings(in: iova, size, call)
        for start in hit.keys { mappings.removeValue(forKey: start) }
        return hit.values.reduce(0) { $0 + $1.size }
    }

    /// The mappings inside [iova, iova + size); type1v2 refuses (EINVAL) a
    /// range that would cut one in two.
    private func wholeMappings(in iova: UInt64, _ size: UInt64, _ call: Call) throws(VFIOError) -> [UInt64: Mapping] {
        let end = iova + size
        let hit = mappings.filter { $0.key < end && iova < $0.key + $0.value.size }
        for (start, m) in hit where start < iova || start + m.size > end {
            throw fail(call, "VFIO_IOMMU_UNMAP_DMA", EINVAL)
        }
        return hit
    }
}
