/// What a device may do through one translation: read memory, write it,
/// both, or (empty) nothing.
///
/// One type from the guest's tables to the host kernel. Its bits are those
/// of a VT-d second-level paging entry, R in bit 0 and W in bit 1 (spec
/// 9.8), so an entry's low two bits are its permission as they stand, and
/// the walk ANDs them over the levels. NOTIFY on the event channel carries
/// the same two bits (PROTOCOL.md §1.6, as QEMU's IOMMUAccessFlags IOMMU_RO
/// and IOMMU_WO), with 0 meaning unmap. The VFIO backend turns it into
/// VFIO_DMA_MAP_FLAG_READ/WRITE (`VFIO/DMAPermission+MapDMA.swift`).
public struct DMAPermission: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// R: the device may read (DMA from memory).
    public static let read = DMAPermission(rawValue: 1)
    /// W: the device may write (DMA to memory).
    public static let write = DMAPermission(rawValue: 2)
    public static let readWrite: DMAPermission = [.read, .write]

    /// The permission whose bits are `bits`, or nil if any other bit is set
    /// (a byte from the wire, before it is trusted).
    public init?(exactly bits: UInt8) {
        guard bits & ~Self.readWrite.rawValue == 0 else { return nil }
        self.init(rawValue: bits)
    }
}

extension DMAPermission: CustomStringConvertible {
    /// "rw", "r-", "-w" or "--", as the reports print it.
    public var description: String {
        (contains(.read) ? "r" : "-") + (contains(.write) ? "w" : "-")
    }
}
