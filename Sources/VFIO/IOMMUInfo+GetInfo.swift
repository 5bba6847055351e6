import CVFIO

extension IOMMUInfo {
    /// Parses the reply of VFIO_IOMMU_GET_INFO (struct vfio_iommu_type1_info
    /// followed by its capability chain), checking every offset and count
    /// against the bytes the kernel reported filling.
    ///
    /// - Parameters:
    ///   - reply: the buffer passed to the ioctl. Only the first `argsz` bytes
    ///     (as the kernel wrote back) are read.
    ///   - fallbackPageSizes: used when the kernel does not set
    ///     VFIO_IOMMU_INFO_PGSIZES (type1 always does; this is the host page size).
    ///   - subject: names the container in errors.
    /// - Throws: `VFIOError` (errno 0) when the reply is too short or the chain
    ///   or a capability is malformed.
    public init(
        getInfoReply reply: UnsafeRawBufferPointer,
        fallbackPageSizes: UInt64,
        subject: String = "container"
    ) throws(VFIOError) {
        let operation = "VFIO_IOMMU_GET_INFO"
        func malformed(_ why: String) -> VFIOError {
            VFIOError(operation: operation, subject: subject, errno: 0, detail: why)
        }
        let flagsAt = Int(cvfio_offsetof_vfio_iommu_type1_info_flags)
        let pageSizesAt = Int(cvfio_offsetof_vfio_iommu_type1_info_iova_pgsizes)
        let capOffsetAt = Int(cvfio_offsetof_vfio_iommu_type1_info_cap_offset)
        let fixedSize = Int(cvfio_sizeof_vfio_iommu_type1_info)

        // The kernel's minimum reply ends after iova_pgsizes.
        guard reply.count >= pageSizesAt + 8 else {
            throw malformed("reply of \(reply.count) bytes is shorter than the fixed header")
        }
        let argsz = Int(reply.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        let valid = UnsafeRawBufferPointer(rebasing: reply[..<min(argsz, reply.count)])
        guard valid.count >= pageSizesAt + 8 else {
            throw malformed("kernel argsz \(argsz) is shorter than the fixed header")
        }
        let flags = UInt(valid.loadUnaligned(fromByteOffset: flagsAt, as: UInt32.self))
        let pageSizes = flags & cvfio_VFIO_IOMMU_INFO_PGSIZES != 0
            ? valid.loadUnaligned(fromByteOffset: pageSizesAt, as: UInt64.self)
            : fallbackPageSizes

        var ranges: [IOVARange]?
        var available: UInt32?
        // cap_offset exists only if the kernel filled that far; it stays 0 when
        // our buffer was too small for the chain (then argsz says how big).
        if flags & cvfio_VFIO_IOMMU_INFO_CAPS != 0, valid.count >= capOffsetAt + 4 {
            let first = Int(valid.loadUnaligned(fromByteOffset: capOffsetAt, as: UInt32.self))
            let chain = try CapabilityChain.walk(valid, firstOffset: first, fixedSize: fixedSize,
                                                 operation: operation, subject: subject)
            for cap in chain {
                switch UInt(cap.id) {
                case cvfio_VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE where ranges == nil:
                    ranges = try Self.parseIOVARanges(cap, in: valid, malformed: malformed)
                case cvfio_VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL where available == nil:
                    available = try Self.parseDMAAvailable(cap, in: valid, malformed: malformed)
                default:
                    // Other capabilities (migration, dirty-page tracking) and
                    // repeats are not ours to interpret.
                    continue
                }
            }
        }
        self.init(pageSizes: pageSizes, iovaRanges: ranges, dmaAvailable: available)
    }

    /// struct vfio_iommu_type1_info_cap_iova_range: header, nr_iovas, reserved,
    /// then nr_iovas inclusive {start, end} pairs. Versions above 1 are read
    /// with the version-1 layout: VFIO extends structures by appending.
    private static func parseIOVARanges(
        _ cap: VFIOCapability,
        in reply: UnsafeRawBufferPointer,
        malformed: (String) -> VFIOError
    ) throws(VFIOError) -> [IOVARange] {
        let countAt = Int(cvfio_offsetof_cap_iova_range_nr_iovas)
        let rangesAt = Int(cvfio_offsetof_cap_iova_range_iova_ranges)
        let rangeSize = Int(cvfio_sizeof_vfio_iova_range)
        guard cap.version >= 1 else { throw malformed("IOVA range capability has version 0") }
        guard cap.length >= rangesAt else {
            throw malformed("IOVA range capability of \(cap.length) bytes is shorter than its header")
        }
        let count = Int(reply.loadUnaligned(fromByteOffset: cap.offset + countAt, as: UInt32.self))
        // count < 2^32 and rangeSize is 16, so this cannot overflow Int.
        let needed = rangesAt + count * rangeSize
        guard needed <= cap.length else {
            throw malformed("nr_iovas \(count) needs \(needed) bytes but the capability has \(cap.length)")
        }
        var ranges: [IOVARange] = []
        ranges.reserveCapacity(count)
        for index in 0..<count {
            let at = cap.offset + rangesAt + index * rangeSize
            let start = reply.loadUnaligned(fromByteOffset: at, as: UInt64.self)
            let end = reply.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self)
            guard start <= end else {
                throw malformed("IOVA range \(index) starts at 0x\(String(start, radix: 16)) after its end 0x\(String(end, radix: 16))")
            }
            ranges.append(IOVARange(start: start, last: end))
        }
        return ranges
    }

    /// struct vfio_iommu_type1_info_dma_avail: header, then the number of
    /// mappings the container may still create (dma_entry_limit minus those in use).
    private static func parseDMAAvailable(
        _ cap: VFIOCapability,
        in reply: UnsafeRawBufferPointer,
        malformed: (String) -> VFIOError
    ) throws(VFIOError) -> UInt32 {
        guard cap.version >= 1 else { throw malformed("DMA available capability has version 0") }
        guard cap.length >= Int(cvfio_sizeof_cap_dma_avail) else {
            throw malformed("DMA available capability of \(cap.length) bytes is too short")
        }
        return reply.loadUnaligned(fromByteOffset: cap.offset + Int(cvfio_offsetof_cap_dma_avail_avail),
                                   as: UInt32.self)
    }
}
