import VTd

/// One entry of `NOTIFY` (PROTOCOL.md §1.6): what a QEMU IOMMU notifier carries
/// (`IOMMUTLBEntry`) for one device.
public struct NotifierEntry: Sendable, Equatable, Hashable {
    /// I/O virtual address, aligned to `addressMask + 1`.
    public var iova: UInt64
    /// Guest-physical address, same alignment.
    public var translatedAddress: UInt64
    /// Size − 1; the size is a power of two, at least 4 KiB.
    public var addressMask: UInt64
    /// The device (bus << 8 | device << 3 | function).
    public var sourceID: UInt16
    /// The permission byte: 1 read, 2 write, 3 both; empty (0) unmaps what
    /// lies wholly inside the range. The decoder refuses any other bit.
    public var permission: DMAPermission

    public init(iova: UInt64, translatedAddress: UInt64, addressMask: UInt64, sourceID: UInt16, permission: DMAPermission) {
        self.iova = iova
        self.translatedAddress = translatedAddress
        self.addressMask = addressMask
        self.sourceID = sourceID
        self.permission = permission
    }

    /// The source-id as the VT-d model types it.
    public var source: SourceID { SourceID(rawValue: sourceID) }

    /// Permission 0: unmap what lies wholly inside the range.
    public var isUnmap: Bool { permission.isEmpty }

    /// Bytes per entry on the wire.
    static let wireSize = 32
}
