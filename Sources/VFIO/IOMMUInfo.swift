/// An inclusive range of I/O virtual addresses, as the type1 IOVA-range
/// capability reports it (start and end are both inside the range).
public struct IOVARange: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var start: UInt64
    public var last: UInt64

    public init(start: UInt64, last: UInt64) {
        precondition(start <= last, "IOVARange start must not exceed its last address")
        self.start = start
        self.last = last
    }

    /// True when [iova, iova + size) lies wholly inside this range.
    @inlinable
    public func contains(iova: UInt64, size: UInt64) -> Bool {
        guard size > 0 else { return false }
        let (end, overflow) = iova.addingReportingOverflow(size - 1)
        return !overflow && iova >= start && end <= last
    }

    public var description: String {
        "[0x\(String(start, radix: 16)), 0x\(String(last, radix: 16))]"
    }
}

/// What the host IOMMU behind a container allows, from VFIO_IOMMU_GET_INFO
/// and its capability chain.
public struct IOMMUInfo: Sendable, Equatable {
    /// Bitmap of supported page sizes (bit n set: 2^n bytes is supported).
    public var pageSizes: UInt64
    /// Usable IOVA ranges (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE). nil when the
    /// kernel did not report them; then everything is assumed usable.
    public var iovaRanges: [IOVARange]?
    /// DMA mappings still available (VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL), i.e. what
    /// is left of the type1 dma_entry_limit. nil when not reported.
    public var dmaAvailable: UInt32?

    public init(pageSizes: UInt64, iovaRanges: [IOVARange]?, dmaAvailable: UInt32?) {
        self.pageSizes = pageSizes
        self.iovaRanges = iovaRanges
        self.dmaAvailable = dmaAvailable
    }

    /// True when [iova, iova + size) lies inside one usable range.
    @inlinable
    public func isUsable(iova: UInt64, size: UInt64) -> Bool {
        guard let iovaRanges else { return true }
        return iovaRanges.contains { $0.contains(iova: iova, size: size) }
    }
}
